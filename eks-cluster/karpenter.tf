# --- Karpenter: nodes that follow the pods ---------------------------------------
#
# The HorizontalPodAutoscaler adds pods; when they do not fit, Karpenter
# launches a node that fits them (within karpenter_cpu_limit) in seconds, and
# removes nodes that turn empty or underused. The fixed managed node group
# (main.tf) runs Karpenter itself. The controller reaches AWS through EKS Pod
# Identity; spot interruptions and instance events arrive through the SQS
# queue the submodule creates.

module "karpenter" {
  # checkov:skip=CKV_TF_1:Registry module pinned by version constraint; registry sources cannot be pinned to a commit hash
  source  = "terraform-aws-modules/eks/aws//modules/karpenter"
  version = "~> 21.19"

  cluster_name = module.eks.cluster_name

  # The EC2NodeClass names the node role, so its name is fixed.
  node_iam_role_use_name_prefix = false
  node_iam_role_name            = "${var.cluster_name}-karpenter-node"

  create_pod_identity_association = true
  namespace                       = "kube-system"
  service_account                 = "karpenter"
}

# The chart is public and pulled anonymously. No registry token: a token is
# new on every read, so it would make every plan show an update and every
# apply a new Helm revision (the checks refuse token data sources).
resource "helm_release" "karpenter" {
  name       = "karpenter"
  namespace  = "kube-system"
  repository = "oci://public.ecr.aws/karpenter"
  chart      = "karpenter"
  version    = var.karpenter_chart_version

  values = [yamlencode({
    nodeSelector = {
      "karpenter.sh/controller" = "true"
    }
    dnsPolicy = "Default"
    settings = {
      clusterName       = module.eks.cluster_name
      clusterEndpoint   = module.eks.cluster_endpoint
      interruptionQueue = module.karpenter.queue_name
    }
  })]

  depends_on = [module.eks, module.karpenter]
}

# The NodePool and EC2NodeClass, from a chart in this root: Helm does not need
# Karpenter's CRDs to exist at plan time, as kubernetes_manifest would.
resource "helm_release" "karpenter_nodes" {
  name      = "karpenter-nodes"
  namespace = "kube-system"
  chart     = "${path.module}/charts/karpenter-nodes"

  values = [yamlencode({
    clusterName   = module.eks.cluster_name
    nodeRole      = module.karpenter.node_iam_role_name
    cpuLimit      = var.karpenter_cpu_limit
    capacityTypes = var.karpenter_capacity_types
    diskSizeGb    = var.node_disk_size_gb
  })]

  depends_on = [helm_release.karpenter]
}
