variable "plugin_command" {
  description = "File name of the plugin binary in Vault's plugin_directory. Default: the name in the release zip, \"vault-plugin-secrets-piwik_<plugin_version>\" (add .exe on Windows)."
  type        = string
  default     = null
}

variable "plugin_version" {
  description = "Version the plugin binary reports, e.g. \"v0.2.0\" (vault plugin info shows it after a first registration)."
  type        = string
}

variable "plugin_sha256" {
  description = "SHA-256 of the plugin binary, hex (sha256sum vault-plugin-secrets-piwik_v0.2.0)."
  type        = string

  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.plugin_sha256))
    error_message = "plugin_sha256 must be 64 lowercase hex digits."
  }
}

variable "piwik_url" {
  description = "Base URL of the Piwik PRO account, e.g. \"https://acme.piwik.pro\"."
  type        = string
}

variable "piwik_client_id" {
  description = "Client ID of the Piwik PRO API credential the mount uses by default."
  type        = string
  sensitive   = true
}

variable "piwik_client_secret" {
  description = "Client secret of that credential. Write-only in Vault; keep it out of .tfvars files in Git (use TF_VAR_piwik_client_secret)."
  type        = string
  sensitive   = true
}

variable "roles" {
  description = "Roles by name: ttl caps the lease in seconds (0: the token's own lifetime); token_reuse lets readers share one cached token per Vault node."
  type = map(object({
    ttl         = optional(number, 0)
    token_reuse = optional(bool, false)
  }))
  default = {
    reporting = {}
  }
}

variable "role_credentials" {
  description = "Own Piwik PRO API credentials of some roles, by role name, for least privilege (a read-only Piwik PRO user for reporting, say)."
  type = map(object({
    client_id     = string
    client_secret = string
  }))
  default   = {}
  sensitive = true
}
