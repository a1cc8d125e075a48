# Vault Agent as the process supervisor of an application that takes its
# Piwik PRO token from the environment and never re-reads it.
#
# The agent logs in with AppRole, reads piwik/creds/reporting, and starts the
# application with PIWIK_ACCESS_TOKEN and PIWIK_TOKEN_EXPIRES_AT in its
# environment. Piwik PRO tokens cannot be renewed: when the agent reads a new
# token (after about three quarters of the lease), it stops the application
# (SIGTERM, then SIGKILL after 30 seconds) and starts it again with the new
# token. The application is restarted at every rotation, so it must start
# quickly and stop cleanly on SIGTERM.
#
# This mode (env_template + exec) needs an agent of its own: Vault Agent
# refuses a config that also has template or api_proxy blocks. For an
# application that re-reads a file, use agent.hcl instead; it restarts
# nothing.
#
# Run the agent as the application's user: the application runs as the
# agent's child, with the agent's user and environment. If the application
# exits by itself, the agent exits with its exit code, so run the agent
# under a service manager that restarts it.
#
#   vault agent -config=/etc/vault-agent/piwik/agent-exec.hcl
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
  # A new token after about three quarters of the lease (0.75, give or take
  # 0.05, of what the lease had when the agent read it): for a 30-minute
  # token, a restart every 21 to 24 minutes, each new process starting with
  # the whole life of a fresh token.
  lease_renewal_threshold = 0.75

  # Stop (and let the service manager restart and alert) instead of running
  # the application on an expiring token when Vault or Piwik PRO keeps
  # failing.
  exit_on_retry_failure = true
}

# Both variables come from one read of the secret: the agent reads each
# path once and shares the answer between the templates.
env_template "PIWIK_ACCESS_TOKEN" {
  contents             = "{{ with secret \"piwik/creds/reporting\" }}{{ .Data.access_token }}{{ end }}"
  error_on_missing_key = true
}

env_template "PIWIK_TOKEN_EXPIRES_AT" {
  contents             = "{{ with secret \"piwik/creds/reporting\" }}{{ .Data.expires_at }}{{ end }}"
  error_on_missing_key = true
}

exec {
  command                   = ["/usr/local/bin/piwik-reporting"]
  restart_on_secret_changes = "always"
  restart_stop_signal       = "SIGTERM"
}
