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

output "private_subnet_cidrs" {
  description = "CIDRs of the private subnets (nodes, pods and the internal NLB); kubernetes/base/networkpolicy.yaml admits these on the API port."
  value       = module.vpc.private_subnets_cidr_blocks
}

output "public_subnet_cidrs" {
  description = "CIDRs of the public subnets (NAT gateways and the internet-facing NLB); kubernetes/components/public admits these on the API port too."
  value       = module.vpc.public_subnets_cidr_blocks
}

output "addon_versions" {
  description = "Version of each EKS add-on the eks module installed, by name; commit them as addon_versions to pin them."
  value       = { for name, addon in module.eks.cluster_addons : name => addon.addon_version }
}

output "service_role_arn" {
  description = "IAM role the service's pods receive through EKS Pod Identity."
  value       = aws_iam_role.service.arn
}

output "node_iam_role_name" {
  description = "IAM role of the fixed managed node group (holds no DynamoDB permissions). The eks module's output of the same name is the EKS Auto Mode role, null here."
  value       = module.eks.eks_managed_node_groups["default"].iam_role_name
}

output "karpenter_node_iam_role_name" {
  description = "IAM role of the nodes Karpenter launches (named in the EC2NodeClass)."
  value       = module.karpenter.node_iam_role_name
}

output "cluster_admin_role_arn" {
  description = "Role with cluster-admin through an access entry; aws eks update-kubeconfig --role-arn it (the Terraform runner assumes it too)."
  value       = aws_iam_role.cluster_admin.arn
}

output "deployer_role_arns" {
  description = "Roles found by deployer_role_names that may apply the service's manifests in its namespace (the deployer Role, no Secrets; empty until the ecr-repo root has made the CI role)."
  value       = local.deployer_role_arns
}

output "service_namespace" {
  description = "Namespace of the service, made by this root (the deploy role may only act inside it)."
  value       = kubernetes_namespace_v1.service.metadata[0].name
}

output "kubeconfig_admin_command" {
  description = "Command that writes a kubeconfig entry acting as the cluster-admin role."
  value       = "aws eks update-kubeconfig --region ${var.aws_region} --name ${module.eks.cluster_name} --role-arn ${aws_iam_role.cluster_admin.arn}"
}
