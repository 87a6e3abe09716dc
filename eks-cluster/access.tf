# --- Who may use the cluster -------------------------------------------------
#
# No creator-admin: the identity that happens to run an apply gets nothing for
# it. Admins are this role (assumed by the Terraform runner and by operators:
# aws eks update-kubeconfig --role-arn <cluster_admin_role_arn>) and the
# principals in var.admin_principal_arns, all through access entries (main.tf).

data "aws_iam_policy_document" "cluster_admin_trust" {
  statement {
    sid     = "NamedPrincipalsOnly"
    actions = ["sts:AssumeRole", "sts:TagSession"]

    # Named roles and users only (cluster_admin_role_trusted_arns), never the
    # account root: trusting the root would let any principal of the account
    # whose own policy allows sts:AssumeRole become cluster admin.
    principals {
      type        = "AWS"
      identifiers = var.cluster_admin_role_trusted_arns
    }
  }
}

resource "aws_iam_role" "cluster_admin" {
  name                 = "${var.cluster_name}-cluster-admin"
  description          = "Cluster admin of EKS cluster ${var.cluster_name} (access entry); no AWS permissions of its own"
  assume_role_policy   = data.aws_iam_policy_document.cluster_admin_trust.json
  max_session_duration = 3600
}

# --- The deploy role's rights in the cluster -----------------------------------
#
# The CI deploy roles (deployer_role_names) are in this Kubernetes group
# through their access entries (main.tf), and the group has this Role in the
# service's namespace and nothing else: exactly the kinds that kubernetes/
# renders (kubernetes/deploy.sh applies them server-side), what
# `kubectl rollout status` and the deploy script's diagnostics read, and no
# Secrets: not even get or list. The EKS access policies cannot express that
# (AmazonEKSEditPolicy includes Secrets, AmazonEKSViewPolicy cannot write).
# The API keys Secret is made by an admin (docs/deploy-aws.md, "API keys"). The checks
# (.ci/infra/tfinfra.py manifests) compare these rules with every rendering.
#
# A role that may create Deployments can still have a pod mount a Secret of
# the namespace; what this Role takes away is reading Secrets through the API
# with the CI role's credentials.
locals {
  deployer_group = "${var.service_namespace}-deployers"

  deployer_write_verbs = ["get", "list", "watch", "create", "update", "patch", "delete"]
  deployer_read_verbs  = ["get", "list", "watch"]
}

resource "kubernetes_role_v1" "deployer" {
  metadata {
    name      = "${var.service_namespace}-deployer"
    namespace = kubernetes_namespace_v1.service.metadata[0].name
  }

  rule {
    api_groups = [""]
    resources  = ["configmaps", "serviceaccounts", "services"]
    verbs      = local.deployer_write_verbs
  }

  rule {
    api_groups = ["apps"]
    resources  = ["deployments"]
    verbs      = local.deployer_write_verbs
  }

  rule {
    api_groups = ["autoscaling"]
    resources  = ["horizontalpodautoscalers"]
    verbs      = local.deployer_write_verbs
  }

  rule {
    api_groups = ["policy"]
    resources  = ["poddisruptionbudgets"]
    verbs      = local.deployer_write_verbs
  }

  rule {
    api_groups = ["networking.k8s.io"]
    resources  = ["networkpolicies"]
    verbs      = local.deployer_write_verbs
  }

  # The optional monitoring component (kubernetes/overlays/monitoring).
  rule {
    api_groups = ["monitoring.coreos.com"]
    resources  = ["podmonitors", "prometheusrules"]
    verbs      = local.deployer_write_verbs
  }

  # `kubectl rollout status` and the deploy script's diagnostics.
  rule {
    api_groups = ["apps"]
    resources  = ["replicasets"]
    verbs      = local.deployer_read_verbs
  }

  rule {
    api_groups = [""]
    resources  = ["pods", "events"]
    verbs      = local.deployer_read_verbs
  }

  rule {
    api_groups = ["events.k8s.io"]
    resources  = ["events"]
    verbs      = local.deployer_read_verbs
  }
}

resource "kubernetes_role_binding_v1" "deployer" {
  metadata {
    name      = "${var.service_namespace}-deployer"
    namespace = kubernetes_namespace_v1.service.metadata[0].name
  }

  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Role"
    name      = kubernetes_role_v1.deployer.metadata[0].name
  }

  subject {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Group"
    name      = local.deployer_group
  }
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
