# dashboards-reader: for an application (or a Vault Agent, the Vault Secrets
# Operator or the Vault CSI provider acting for it) that needs Piwik PRO
# access tokens of the "dashboards" role (leased=false, token_reuse=true)
# and nothing else. See docs/kubernetes.md.
#
#   vault policy write dashboards-reader dashboards-reader.hcl

path "piwik/creds/dashboards" {
  capabilities = ["read"]
}
