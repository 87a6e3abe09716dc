# This root creates the bucket that holds every root's state, including its
# own. The first apply runs with a local backend (see README.md, "Bootstrap"),
# then the state is migrated into the bucket it created.
#
# The bucket name and region are passed at init time so that no account
# specific name is committed:
#   terraform init -backend-config=bucket=<state_bucket_name> -backend-config=region=<region>
terraform {
  backend "s3" {
    key          = "terraform-backends/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}
