# piwik-admin: for the people who run the Piwik PRO secrets engine mounted at
# piwik/. They manage the connection to Piwik PRO and the roles, may read
# tokens of any role (to test a role after changing it), and may list,
# describe and purge the stored tokens of token_reuse roles (tokens/, which
# never returns a token).
#
# Mounting, tuning or disabling the engine and registering plugin versions
# are sys/ operations and stay with the Vault operators. client_secret is
# write-only: reading piwik/config never returns it, whatever the policy.
#
#   vault policy write piwik-admin piwik-admin.hcl

path "piwik/config" {
  capabilities = ["create", "read", "update", "patch", "delete"]
}

path "piwik/roles/" {
  capabilities = ["list"]
}

path "piwik/roles/*" {
  capabilities = ["create", "read", "update", "patch", "delete"]
}

path "piwik/creds/*" {
  capabilities = ["read"]
}

path "piwik/tokens" {
  capabilities = ["delete"]
}

path "piwik/tokens/" {
  capabilities = ["list"]
}

path "piwik/tokens/*" {
  capabilities = ["read", "delete"]
}
