output "table_name" {
  description = "Name of the counts table, for FLIGHT_COUNTER_TABLE in kubernetes/configmap.yaml."
  value       = aws_dynamodb_table.counts.name
}

output "table_arn" {
  description = "ARN of the counts table, passed to the eks-cluster root as dynamodb_table_arn."
  value       = aws_dynamodb_table.counts.arn
}
