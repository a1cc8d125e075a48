# reporting-reader: for an application (or a Vault Agent acting for it) that
# needs Piwik PRO access tokens of the "reporting" role and nothing else.
#
# It cannot read the mount's config, see or change roles, or get tokens of any
# other role. Each read of piwik/creds/reporting mints a new token.
#
#   vault policy write reporting-reader reporting-reader.hcl

path "piwik/creds/reporting" {
  capabilities = ["read"]
}
