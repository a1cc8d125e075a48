# Vault Agent for an application that calls the Piwik PRO API.
#
# The agent logs in with AppRole, reads piwik/creds/reporting, and writes the
# access token to two files the application reads: the bare token, and an env
# file (PIWIK_ACCESS_TOKEN=...) that short-lived jobs source as they start
# (`set -a; . piwik.env; set +a`). Not for a long-running service's
# EnvironmentFile=: systemd reads it once, at start; agent-exec.hcl restarts
# such a service with each new token instead.
# Piwik PRO tokens cannot be renewed, so before the lease runs out (or, for a
# role with leased=false, every few minutes) the agent reads a new token and
# rewrites both files; the application should re-read the file before each
# batch of API calls rather than once at start.
#
# The AppRole needs only the reporting-reader policy
# (examples/policies/reporting-reader.hcl). No token sink is configured: the
# agent's own Vault token stays in memory.
#
#   vault agent -config=/etc/vault-agent/piwik/agent.hcl
#
# VAULT_ADDR, when set, overrides the address below.

vault {
  address = "https://vault.example.com:8200"
}

auto_auth {
  method "approle" {
    mount_path = "auth/approle"
    config = {
      role_id_file_path                   = "/etc/vault-agent/piwik/role-id"
      secret_id_file_path                 = "/etc/vault-agent/piwik/secret-id"
      remove_secret_id_file_after_reading = false
    }
  }
}

template_config {
  # Fetch the next token when about three quarters of the current one's
  # lifetime has passed (for a 30-minute token: after about 22 minutes), so
  # the application always holds a token with minutes left, not seconds.
  lease_renewal_threshold = 0.75

  # Only for roles with leased=false; no effect on leased ones. A read
  # without a lease is a static secret to the agent: it ignores ttl and
  # expires_at and reads the path again after lease_renewal_threshold (give
  # or take 0.05) of this interval, here every 3.5 to 4 minutes, rewriting
  # the files when the token changed. With token_reuse a read may return a
  # token with only reuse_min_remaining left (half its life by default), so
  # keep the interval well under that: with 5m, a 30-minute token still has
  # at least 11 minutes when it is replaced.
  static_secret_render_interval = "5m"

  # Stop (and let the service manager restart and alert) instead of serving
  # an expiring token when Vault or Piwik PRO keeps failing.
  exit_on_retry_failure = true
}

template {
  source      = "/etc/vault-agent/piwik/piwik-token.ctmpl"
  destination = "/run/vault-agent/piwik/token"
  perms       = "0600"
}

template {
  source      = "/etc/vault-agent/piwik/piwik.env.ctmpl"
  destination = "/run/vault-agent/piwik/piwik.env"
  perms       = "0600"
}
