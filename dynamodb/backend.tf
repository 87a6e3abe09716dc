# Partial S3 backend: bucket and region come from the terraform-backends root
# at init time (terraform init -backend-config=../backend.hcl), so no account
# specific name is committed. State objects are encrypted with the state KMS
# key, named by its alias (made by terraform-backends); the bucket policy
# refuses state written without it.
terraform {
  backend "s3" {
    key          = "dynamodb/terraform.tfstate"
    encrypt      = true
    kms_key_id   = "alias/flight-counter-tfstate"
    use_lockfile = true
  }
}
