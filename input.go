package piwik

import (
	"context"
	"fmt"
	"maps"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"
)

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
