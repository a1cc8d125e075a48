# piwik-monitoring: for a monitoring system (a Prometheus scraper, a health
# probe) watching the Piwik PRO secrets engine mounted at piwik/.
#
# It reads piwik/check (which asks Piwik PRO for one token per credential at
# most once a minute on each node, whatever the polling rate, and throws it
# away; it answers with a non-2xx status when any credential fails) and
# piwik/metrics, in JSON or, with ?format=prometheus, the Prometheus text
# format. It cannot read tokens, the config or the roles.
#
#   vault policy write piwik-monitoring piwik-monitoring.hcl

path "piwik/check" {
  capabilities = ["read"]
}

path "piwik/metrics" {
  capabilities = ["read"]
}
