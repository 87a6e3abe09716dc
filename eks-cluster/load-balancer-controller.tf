# --- AWS Load Balancer Controller ----------------------------------------------
#
# Provisions the service's NLB (kubernetes/base/service.yaml, loadBalancerClass
# service.k8s.aws/nlb) with IP targets: the NLB sends to pod IPs directly, with
# no node port hop, and deregisters a pod as soon as it starts terminating.
# AWS access through EKS Pod Identity, with the controller's published
# least-privilege policy (attach_aws_lb_controller_policy).

module "lb_controller_pod_identity" {
  # checkov:skip=CKV_TF_1:Registry module pinned by version constraint; registry sources cannot be pinned to a commit hash
  source  = "terraform-aws-modules/eks-pod-identity/aws"
  version = "~> 2.8"

  name            = "${var.cluster_name}-lb-controller"
  use_name_prefix = false

  attach_aws_lb_controller_policy = true

  associations = {
    controller = {
      cluster_name    = module.eks.cluster_name
      namespace       = "kube-system"
      service_account = "aws-load-balancer-controller"
    }
  }
}

resource "helm_release" "lb_controller" {
  name       = "aws-load-balancer-controller"
  namespace  = "kube-system"
  repository = "https://aws.github.io/eks-charts"
  chart      = "aws-load-balancer-controller"
  version    = var.lb_controller_chart_version

  values = [yamlencode({
    clusterName  = module.eks.cluster_name
    region       = var.aws_region
    vpcId        = module.vpc.vpc_id
    replicaCount = 2
    serviceAccount = {
      create = true
      name   = "aws-load-balancer-controller"
    }
    # Only Services that ask for it (loadBalancerClass) are handled; no
    # webhook rewrites other Services.
    enableServiceMutatorWebhook = false
    nodeSelector = {
      "karpenter.sh/controller" = "true"
    }
  })]

  depends_on = [module.eks, module.lb_controller_pod_identity]
}
