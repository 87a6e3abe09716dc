output "cluster_name" {
  description = "Name of the EKS cluster, for aws eks update-kubeconfig --name."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "URL of the Kubernetes API server."
  value       = module.eks.cluster_endpoint
}

output "cluster_version" {
  description = "Kubernetes version of the control plane."
  value       = module.eks.cluster_version
}

output "kubeconfig_command" {
  description = "Command that writes a kubeconfig entry for this cluster."
  value       = "aws eks update-kubeconfig --region ${var.aws_region} --name ${module.eks.cluster_name}"
}

output "vpc_id" {
  description = "ID of the VPC."
  value       = module.vpc.vpc_id
}

output "private_subnet_ids" {
  description = "Private subnets (nodes and pods), one per AZ."
  value       = module.vpc.private_subnets
}

output "public_subnet_ids" {
  description = "Public subnets (NAT gateways and internet-facing load balancers), one per AZ."
  value       = module.vpc.public_subnets
}

output "service_role_arn" {
  description = "IAM role the service's pods receive through EKS Pod Identity."
  value       = aws_iam_role.service.arn
}

output "node_iam_role_name" {
  description = "IAM role of the managed nodes (holds no DynamoDB permissions)."
  value       = module.eks.node_iam_role_name
}
