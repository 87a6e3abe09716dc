variable "name" {
  description = "Name of the parameter."
  type        = string
  default     = "fixture"
}

# The mistakes: var.source_name (inside a string template) and var.value are
# used but never declared. What a comment or the literal part of a string says
# is text, not a reference: var.not_a_reference.
resource "aws_ssm_parameter" "example" {
  name        = var.name
  description = "Copy of ${var.source_name}; var.also_not_a_reference is text."
  type        = "String"
  value       = var.value
}
