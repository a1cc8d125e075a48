# The Piwik PRO secrets engine, set up with Terraform's Vault provider:
# the plugin registered in the catalog, mounted at piwik/, its connection to
# Piwik PRO, the roles, and the policy of the applications that read tokens.
#
# The provider finds Vault through VAULT_ADDR and VAULT_TOKEN (or its own
# auth_login settings); the token needs sys/plugins/catalog, sys/mounts,
# sys/policies/acl and piwik/* rights. See README.md.

terraform {
  required_version = ">= 1.5"

  required_providers {
    vault = {
      source  = "hashicorp/vault"
      version = ">= 5.0, < 6.0"
    }
  }
}

# The binary must already be in Vault's plugin_directory on every node,
# under the name it has in the release zip (vault-plugin-secrets-piwik_<version>)
# or var.plugin_command, with this SHA-256.
resource "vault_plugin" "piwik" {
  type    = "secret"
  name    = "vault-plugin-secrets-piwik"
  command = coalesce(var.plugin_command, "vault-plugin-secrets-piwik_${var.plugin_version}")
  version = var.plugin_version
  sha256  = var.plugin_sha256
}

resource "vault_mount" "piwik" {
  path           = "piwik" # examples/policies/*.hcl assume this path
  type           = vault_plugin.piwik.name
  plugin_version = vault_plugin.piwik.version
  description    = "Piwik PRO API access tokens"
}

# The connection to Piwik PRO. Vault never returns client_id or
# client_secret on read: ignore_absent_fields makes the provider compare only
# the fields a read does return (url), so the write-only credentials do not
# show as a change on every plan. Changing the variables still writes them.
resource "vault_generic_endpoint" "config" {
  path                 = "${vault_mount.piwik.path}/config"
  ignore_absent_fields = true

  data_json = jsonencode({
    url           = var.piwik_url
    client_id     = var.piwik_client_id
    client_secret = var.piwik_client_secret
  })
}

# One endpoint per role. Durations are written in seconds (numbers), the
# form a read returns them in, so that a plan shows no false drift. A role
# named in var.role_credentials uses that Piwik PRO user's credential instead
# of the config's; like the config's, it is write-only.
resource "vault_generic_endpoint" "role" {
  for_each = var.roles

  path                 = "${vault_mount.piwik.path}/roles/${each.key}"
  ignore_absent_fields = true

  data_json = jsonencode(merge(
    {
      ttl         = each.value.ttl
      token_reuse = each.value.token_reuse
    },
    contains(keys(var.role_credentials), each.key) ? {
      client_id     = var.role_credentials[each.key].client_id
      client_secret = var.role_credentials[each.key].client_secret
    } : {},
  ))

  # A role's own credentials are checked against the account in config.
  depends_on = [vault_generic_endpoint.config]
}

# What an application (or its Vault Agent) gets: tokens of the reporting
# role, nothing else.
resource "vault_policy" "reporting_reader" {
  name   = "reporting-reader"
  policy = file("${path.module}/../policies/reporting-reader.hcl")
}
