# This root creates the bucket that holds every root's state, including its
# own. The first apply runs with a local backend (see README.md, "Bootstrap"),
# then the state is migrated into the bucket it created.
#
# The bucket name and region are passed at init time so that no account
# specific name is committed:
#   terraform init -backend-config=../backend.hcl
# State objects are encrypted with the state KMS key (its alias is fixed in
# main.tf); the bucket policy refuses state written without it.
terraform {
  backend "s3" {
    key          = "terraform-backends/terraform.tfstate"
    encrypt      = true
    kms_key_id   = "alias/flight-counter-tfstate"
    use_lockfile = true
  }
}
