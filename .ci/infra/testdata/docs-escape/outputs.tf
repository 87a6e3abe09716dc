output "table_arn" {
  description = "ARN for the eks_cluster root's data.aws_dynamodb_table lookup."
  value       = var.table_name
}
