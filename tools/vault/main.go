// Command vault is the stock Vault binary, built from a pinned
// github.com/hashicorp/vault release so that the plugin's end-to-end tests
// run against a real server, CLI and Agent without any download outside the
// Go module proxy.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
