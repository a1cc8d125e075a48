// Command vault is Vault v1.19.5 for `make compat`, built with the newer
// vault/sdk and Snowflake plugin its go.mod explains; see tools/vault for
// the release `make test` runs against.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
