package standin

import (
	"net/http"
	"strings"
)

// meContentType is the content type of Piwik PRO's platform APIs (JSON:API).
const meContentType = "application/vnd.api+json"

// meUser is the JSON:API document GET /api/users/v2/me returns.
type meUser struct {
	Data struct {
		ID         string `json:"id"`
		Type       string `json:"type"`
		Attributes struct {
			Email        string `json:"email"`
			Organization string `json:"organization"`
		} `json:"attributes"`
	} `json:"data"`
}

// meUnauthorized is the 401 body of the users API.
var meUnauthorized = []byte(`{"errors":[{"status":"401","detail":"No valid credentials provided."}]}`)

// serveMe serves GET <prefix>/api/users/v2/me: who the bearer token's user is.
func (s *Server) serveMe(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, http.MethodGet)
		return
	}
	cl, ok := s.verify(bearerToken(r))
	if !ok {
		w.Header().Set("WWW-Authenticate", "Bearer")
		reply{status: http.StatusUnauthorized, contentType: meContentType, body: meUnauthorized}.write(w)
		return
	}
	var u meUser
	u.Data.ID = cl.Sub
	u.Data.Type = "user"
	u.Data.Attributes.Email = cl.Eml
	u.Data.Attributes.Organization = cl.Org
	jsonReply(http.StatusOK, meContentType, u).write(w)
}

// bearerToken returns the token of an "Authorization: Bearer" header, or ""
// if there is none.
func bearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}
