data "aws_partition" "current" {}

resource "aws_ssm_parameter" "example" {
  name  = "${var.name}-again"
  type  = "String"
  value = "fixture"
}

module "labels" {
  source = "./labels"
}

variable "name" {
  description = "Name of the parameter, again."
  type        = string
  default     = "fixture"
}

output "arn" {
  description = "ARN of the parameter, again."
  value       = aws_ssm_parameter.example.arn
}

locals {
  suffix = "b"
}
