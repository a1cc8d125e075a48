// Command vault is the stock Vault v1.19.4 binary for `make compat`; see
// tools/vault for the release `make test` runs against.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
