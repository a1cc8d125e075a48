package piwik

import "fmt"

// fraction names 1/n in help text ("half", "a third", "a quarter"), so that
// prose about a share of something takes n from the constant that sets it.
func fraction(n int) string {
	switch n {
	case 2:
		return "half"
	case 3:
		return "a third"
	case 4:
		return "a quarter"
	}
	return fmt.Sprintf("1/%d", n)
}
