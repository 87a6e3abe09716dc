# The mistakes: a module, a data source, a resource and a local that are used
# but not declared (the names are close to ones that are).
module "labels" {
  source = "./labels"
}

data "aws_caller_identity" "current" {}

resource "aws_ssm_parameter" "example" {
  name  = module.label.name
  type  = "String"
  value = data.aws_caller_identity.this.account_id
}

locals {
  region = "us-east-1"
}

resource "aws_ssm_parameter" "copy" {
  name  = "${aws_ssm_parameter.exampel.name}-copy"
  type  = "String"
  value = local.regoin
}

# Moved from an address that no longer exists: not a reference.
moved {
  from = aws_ssm_parameter.old
  to   = aws_ssm_parameter.example
}
