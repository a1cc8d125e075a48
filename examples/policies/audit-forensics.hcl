# audit-forensics: for the operator who traces a leaked Piwik PRO access
# token to the Vault read that handed it out (SECURITY.md, "Tracing a leaked
# access token to its reader"), and contains it.
#
# It reads no secret: it hashes inputs with an audit device's key, looks up
# leases, entities and token accessors, and revokes a lease or a token by
# its accessor. Listing token accessors needs sudo.
#
#   vault policy write audit-forensics audit-forensics.hcl

path "sys/audit-hash/*" {
  capabilities = ["update"]
}

path "sys/leases/lookup" {
  capabilities = ["update"]
}

path "identity/entity/id/*" {
  capabilities = ["read"]
}

path "auth/token/accessors" {
  capabilities = ["list", "sudo"]
}

path "auth/token/lookup-accessor" {
  capabilities = ["update"]
}

# Containment: `vault lease revoke` names the lease in the path, so this
# allows revoking the leases of the engine at piwik/ only (put your mount
# path there), and any token by its accessor.
path "sys/leases/revoke/piwik/*" {
  capabilities = ["update"]
}

path "auth/token/revoke-accessor" {
  capabilities = ["update"]
}
