# Rendered by Basphere when terraform.state_backend is pg: the state lives in PostgreSQL, in the
# VM's own workspace, where every replica finds it. conn_str and schema_name are given to
# terraform init with -backend-config, the password as PGPASSWORD.
terraform {
  backend "pg" {}
}
