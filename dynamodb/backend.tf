# Partial S3 backend: bucket and region come from the terraform-backends root
# at init time (terraform init -backend-config=../backend.hcl), so no account
# specific name is committed.
terraform {
  backend "s3" {
    key          = "dynamodb/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}
