# The mistakes: every kind of address declared twice, the way the blocker of
# eks-cluster had it (a second data "aws_partition" "current" in another
# file); see more.tf.
data "aws_partition" "current" {}

resource "aws_ssm_parameter" "example" {
  name  = var.name
  type  = "String"
  value = "${data.aws_partition.current.partition}-${local.suffix}"
}

module "labels" {
  source = "./labels"
}

variable "name" {
  description = "Name of the parameter."
  type        = string
  default     = "fixture"
}

output "arn" {
  description = "ARN of the parameter."
  value       = aws_ssm_parameter.example.arn
}

locals {
  suffix = "a"
}
