# --- Who may use the cluster -------------------------------------------------
#
# No creator-admin: the identity that happens to run an apply gets nothing for
# it. Admins are this role (assumed by the Terraform runner and by operators:
# aws eks update-kubeconfig --role-arn <cluster_admin_role_arn>) and the
# principals in var.admin_principal_arns, all through access entries (main.tf).

data "aws_iam_policy_document" "cluster_admin_trust" {
  statement {
    sid     = "AccountPrincipalsAllowedByTheirOwnPolicy"
    actions = ["sts:AssumeRole", "sts:TagSession"]

    # The account, not "*": only IAM principals of this account whose own
    # policies allow sts:AssumeRole on this role can assume it.
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
}

resource "aws_iam_role" "cluster_admin" {
  name                 = "${var.cluster_name}-cluster-admin"
  description          = "Cluster admin of EKS cluster ${var.cluster_name} (access entry); no AWS permissions of its own"
  assume_role_policy   = data.aws_iam_policy_document.cluster_admin_trust.json
  max_session_duration = 3600
}

# --- The service's namespace --------------------------------------------------
#
# Cluster-scoped, so it is made here and not by the deploy role, which may
# edit objects inside it only.
resource "kubernetes_namespace_v1" "service" {
  metadata {
    name = var.service_namespace

    labels = {
      # Reject any pod that does not meet the "restricted" Pod Security Standard.
      "pod-security.kubernetes.io/enforce"         = "restricted"
      "pod-security.kubernetes.io/enforce-version" = "latest"
      "pod-security.kubernetes.io/audit"           = "restricted"
      "pod-security.kubernetes.io/warn"            = "restricted"
      # The load balancer controller holds a new pod unready until the NLB
      # finds it healthy, so a rollout never outruns target registration.
      "elbv2.k8s.aws/pod-readiness-gate-inject" = "enabled"
    }
  }

  # The access entry of the cluster-admin role must exist before the provider
  # can act as it.
  depends_on = [module.eks]
}
