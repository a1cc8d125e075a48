# Vault Proxy for applications on this host that read Piwik PRO tokens
# without holding a Vault token of their own.
#
# The proxy logs in with AppRole and adds its own Vault token to every
# request that arrives without one (api_proxy.use_auto_auth_token), so an
# application gets a token with a plain HTTP GET:
#
#   curl http://127.0.0.1:8100/v1/piwik/creds/reporting
#
# Whoever can reach the listener acts with the AppRole's policy: keep the
# listener on loopback, and give the AppRole only the roles the applications
# on this host need (examples/policies/reporting-reader.hcl). There is no
# cache block, so every read reaches Vault and mints a new token for its
# caller.
#
#   vault proxy -config=/etc/vault-proxy/piwik/proxy.hcl
#
# VAULT_ADDR, when set, overrides the address below.

vault {
  address = "https://vault.example.com:8200"
}

auto_auth {
  method "approle" {
    mount_path = "auth/approle"
    config = {
      role_id_file_path                   = "/etc/vault-proxy/piwik/role-id"
      secret_id_file_path                 = "/etc/vault-proxy/piwik/secret-id"
      remove_secret_id_file_after_reading = false
    }
  }
}

api_proxy {
  use_auto_auth_token = true
}

listener "tcp" {
  address     = "127.0.0.1:8100"
  tls_disable = true
}
