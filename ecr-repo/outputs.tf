output "repository_url" {
  description = "URL of the ECR repository (registry/name), used for docker push and the kustomize image."
  value       = aws_ecr_repository.service.repository_url
}

output "repository_arn" {
  description = "ARN of the ECR repository."
  value       = aws_ecr_repository.service.arn
}

output "registry_id" {
  description = "Registry (account) that holds the repository, for aws ecr get-login-password."
  value       = aws_ecr_repository.service.registry_id
}

output "github_deploy_role_arn" {
  description = "Role for the GitHub Actions workflow (repository variable AWS_DEPLOY_ROLE_ARN); the eks-cluster root finds it by name (deployer_role_names) and gives it an access entry. Null when github_repository is empty."
  value       = one(aws_iam_role.github_deploy[*].arn)
}
