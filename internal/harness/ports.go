package harness

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// FreePortPair returns a loopback port that is free along with the port
// after it, for a Vault listener and its cluster listener. Another process
// may take them before Vault binds; the starters here retry on "address
// already in use".
func FreePortPair() (int, error) {
	for range 50 {
		l1, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l1.Addr().(*net.TCPAddr).Port
		if portFree(port + 1) {
			l1.Close()
			return port, nil
		}
		l1.Close()
	}
	return 0, errors.New("no free pair of loopback ports found")
}

// StablePortPair returns a free loopback port, and the one after it, below
// the kernel's ephemeral range. A port from that range (what FreePortPair
// returns) can be taken by any outgoing connection while a raft node is
// down, and Vault then restarts without its cluster listener.
func StablePortPair() (int, error) {
	low := 32768
	if data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if fields := strings.Fields(string(data)); len(fields) == 2 {
			if n, err := strconv.Atoi(fields[0]); err == nil {
				low = n
			}
		}
	}
	const base = 10000
	if low-base < 1000 {
		return FreePortPair() // no room below the range: take the risk
	}
	for range 100 {
		port := base + rand.IntN(low-base-1)
		if portFree(port) && portFree(port+1) {
			return port, nil
		}
	}
	return 0, errors.New("no free pair of loopback ports found below the ephemeral range")
}

// portFree reports whether port can be listened on now.
func portFree(port int) bool {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
