package standin

import (
	"regexp"
	"testing"
)

func TestUserIDIsStableAndUUIDShaped(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	if id := userID("x"); !uuid.MatchString(id) || id != userID("x") || id == userID("y") {
		t.Errorf("userID(x) = %q: want a stable, distinct, UUID-shaped id", id)
	}
}
