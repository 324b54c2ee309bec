//! IP allocator (being written).
