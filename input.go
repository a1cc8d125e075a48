package piwik

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"strings"
	"time"

	"github.com/hashicorp/go-secure-stdlib/parseutil"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// maxCredentialLength bounds client_id and client_secret.
const maxCredentialLength = 1024

// HandleRequest screens the input of config and role writes before the
// framework parses it; see screenInput.
func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if err := b.screenInput(req); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	return b.Backend.HandleRequest(ctx, req)
}

// HandleExistenceCheck screens the input too: Vault runs the existence
// check, which parses every field, before HandleRequest.
func (b *backend) HandleExistenceCheck(ctx context.Context, req *logical.Request) (bool, bool, error) {
	if err := b.screenInput(req); err != nil {
		return false, false, errutil.UserError{Err: err.Error()}
	}
	return b.Backend.HandleExistenceCheck(ctx, req)
}

// screenInput does two things the framework would get wrong for writes of
// config and roles:
//
//   - A string field given as another JSON type is refused naming the
//     field and the type. The framework's own conversion error quotes the
//     value, which for a client_secret sent as {"v": "..."} would echo the
//     secret.
//   - A JSON null means "back to the default", for every field alike: it is
//     replaced by the field's default (or zero) value, which the handlers
//     then validate like any other value.
//
// req.Data is replaced, never modified, since the caller may share it.
func (b *backend) screenInput(req *logical.Request) error {
	fields := b.writeFields(req)
	if fields == nil || len(req.Data) == 0 {
		return nil
	}
	data := maps.Clone(req.Data)
	for name, value := range req.Data {
		schema, known := fields[name]
		switch {
		case !known:
			// rejectUnknownFields names it.
		case value == nil:
			data[name] = schema.DefaultOrZero()
		case schema.Type == framework.TypeString:
			if _, ok := value.(string); !ok {
				return fmt.Errorf("%s: must be a string, got %s", name, jsonType(value))
			}
		}
	}
	req.Data = data
	return nil
}

// writeFields returns the fields of the path req writes, or nil when req
// is not a write of config or a role.
func (b *backend) writeFields(req *logical.Request) map[string]*framework.FieldSchema {
	switch req.Operation {
	case logical.CreateOperation, logical.UpdateOperation, logical.PatchOperation:
	default:
		return nil
	}
	switch {
	case req.Path == configStoragePath:
		return b.configFields
	case strings.HasPrefix(req.Path, roleStoragePrefix):
		return b.roleFields
	}
	return nil
}

// jsonType names the JSON type of a decoded value, never the value.
func jsonType(v any) string {
	switch v.(type) {
	case map[string]any:
		return "a JSON object"
	case []any:
		return "a JSON array"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	default:
		return "a number"
	}
}

// rejectUnknownFields refuses parameters the path does not define. Vault
// would only warn and ignore them, which hides typos such as "client_secert"
// in a write that then seems to succeed.
func rejectUnknownFields(d *framework.FieldData) error {
	for name := range d.Raw {
		if _, ok := d.Schema[name]; !ok {
			return fmt.Errorf("%s: unknown field", name)
		}
	}
	return nil
}

// credentialField checks a client_id or client_secret and returns it as it
// is stored: without the one trailing newline (LF or CRLF) that a value
// read from a file with @file ends with. Any other whitespace around it, or
// a control character inside, refuses the write; the error names the
// field, never the value.
func credentialField(field, value string) (string, error) {
	if trimmed, ok := strings.CutSuffix(value, "\r\n"); ok {
		value = trimmed
	} else {
		value = strings.TrimSuffix(value, "\n")
	}
	switch {
	case value == "":
		return "", fmt.Errorf("%s: must not be empty", field)
	case len(value) > maxCredentialLength:
		return "", fmt.Errorf("%s: longer than %d characters", field, maxCredentialLength)
	case strings.ContainsFunc(value, isControl):
		return "", fmt.Errorf("%s: contains control characters (one trailing newline, as a file read with @file ends, is dropped; no other)", field)
	case strings.TrimSpace(value) != value:
		return "", fmt.Errorf("%s: begins or ends with whitespace", field)
	}
	return value, nil
}

// secondsField returns the duration field name of d as it was given, when
// it was: a whole, non-negative number of seconds up to limit. The
// framework would truncate "500ms" or 1.9 to whole seconds, and turn a
// sub-second value, even a negative one, into 0, which every duration
// field of this plugin reads as "no cap" or "the default".
func secondsField(d *framework.FieldData, name string, limit time.Duration) (time.Duration, bool, error) {
	raw, ok := d.Raw[name]
	if !ok {
		return 0, false, nil
	}
	value, err := wholeSeconds(raw)
	switch {
	case err != nil:
		return 0, true, fmt.Errorf("%s: %w", name, err)
	case value > limit:
		return 0, true, fmt.Errorf("%s: must be at most %s", name, limit)
	}
	return value, true, nil
}

// wholeSeconds parses a duration given as seconds (a number, or a string
// such as "90") or with units ("90s", "10m", "1h30m", "1d").
func wholeSeconds(raw any) (time.Duration, error) {
	if n, ok := raw.(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			raw = i
		} else if f, err := n.Float64(); err == nil {
			raw = f
		}
	}
	if f, ok := raw.(float32); ok {
		raw = float64(f)
	}
	if f, ok := raw.(float64); ok {
		switch {
		case math.Abs(f) > 1<<40:
			return 0, errors.New("out of range")
		case f != math.Trunc(f):
			return 0, errNotWholeSeconds
		}
	}
	value, err := parseutil.ParseDurationSecond(raw)
	switch {
	case err != nil:
		return 0, errors.New(`not a duration: give whole seconds ("90") or units ("90s", "10m")`)
	case value < 0:
		return 0, errors.New("must not be negative")
	case value%time.Second != 0:
		return 0, errNotWholeSeconds
	}
	return value, nil
}

var errNotWholeSeconds = errors.New("must be a whole number of seconds")

// corruptEntryError is a storage entry that does not decode. Its message
// names the entry and its size, never its content, which may hold secrets.
type corruptEntryError struct {
	key  string
	size int
}

func (e *corruptEntryError) Error() string {
	return fmt.Sprintf("the stored entry %q (%d bytes) does not decode; write it again in full to replace it", e.key, e.size)
}

// isCorrupt reports whether err is a storage entry that does not decode.
func isCorrupt(err error) bool {
	var corrupt *corruptEntryError
	return errors.As(err, &corrupt)
}

// decodeEntry decodes a storage entry into out, or reports it corrupt.
func decodeEntry(entry *logical.StorageEntry, out any) error {
	if err := entry.DecodeJSON(out); err != nil {
		return &corruptEntryError{key: entry.Key, size: len(entry.Value)}
	}
	return nil
}
