variable "name" {
  description = "Name of the parameter."
  type        = string
  default     = "fixture"
}

resource "aws_ssm_parameter" "example" {
  name  = var.name
  type  = "String"
  value = "fixture"
}

output "arn" {
  description = "ARN of the parameter."
  value       = aws_ssm_parameter.example.arn
}
