output "state_bucket_name" {
  description = "Name of the S3 bucket holding Terraform state; pass it to every root with -backend-config=bucket=..."
  value       = aws_s3_bucket.state.id
}

output "state_bucket_arn" {
  description = "ARN of the state bucket, for IAM policies of whoever runs Terraform."
  value       = aws_s3_bucket.state.arn
}

output "state_bucket_region" {
  description = "Region of the state bucket; pass it with -backend-config=region=..."
  value       = var.aws_region
}

output "state_kms_key_arn" {
  description = "ARN of the KMS key that encrypts state objects; Terraform runners need kms:Encrypt, kms:Decrypt and kms:GenerateDataKey on it."
  value       = aws_kms_key.state.arn
}

output "backend_config" {
  description = "Contents for a backend.hcl file used as terraform init -backend-config=backend.hcl in the other roots."
  value       = <<-EOT
    bucket = "${aws_s3_bucket.state.id}"
    region = "${var.aws_region}"
  EOT
}
