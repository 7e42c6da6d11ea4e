package policy

import (
	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
)

// The list and map fields of the input (tpm.logged_pcrs, boot.efi_apps, boot.events...) are
// Go slices and maps that cel-go's native types wrap in a new CEL list or map at every read:
// a rule such as `[0, 1, 2].all(i, i in tpm.logged_pcrs)` reads its field once per element.
// cachingProvider hands CEL, within one evaluation, the value cel-go made at the first read
// of each such field: the same value, so rules see exactly what they saw before.

// fieldCache holds, for one evaluation, the CEL value of each cached field (cachedFields), nil
// until first read.
type fieldCache [len(cachedFieldNames)]ref.Val

// cachedFieldNames lists the cached fields, "<CEL type>.<field>"; a field's slot in
// fieldCache is its index.
var cachedFieldNames = [...]string{
	"policy.TPM.logged_pcrs",
	"policy.Boot.firmware",
	"policy.Boot.efi_apps",
	"policy.Boot.bootloaders",
	"policy.Boot.grub_commands",
	"policy.Boot.grub_files",
	"policy.Boot.events",
}

// cachingProvider is the CEL type provider of the environment (cel-go's, with the native
// input types) with the getters of the cached fields wrapped (cacheField).
type cachingProvider struct {
	types.Provider
}

// cacheFields is the environment option that installs cachingProvider over the provider
// configured so far.
func cacheFields() cel.EnvOption {
	return func(e *cel.Env) (*cel.Env, error) {
		return cel.CustomTypeProvider(cachingProvider{e.CELTypeProvider()})(e)
	}
}

// FindStructFieldType returns the field type of the underlying provider, with a caching
// getter for the cached fields.
func (p cachingProvider) FindStructFieldType(structType, fieldName string) (*types.FieldType, bool) {
	ft, ok := p.Provider.FindStructFieldType(structType, fieldName)
	if !ok || ft.GetFrom == nil {
		return ft, ok
	}
	for slot, name := range cachedFieldNames {
		if name == structType+"."+fieldName {
			c := *ft
			c.GetFrom = cacheField(slot, ft.GetFrom)
			return &c, true
		}
	}
	return ft, ok
}

// cacheField wraps the getter of the field of slot: on a *TPM or *Boot that carries a
// fieldCache, the first read stores the value get returns and later reads return it.
func cacheField(slot int, get func(any) (any, error)) func(any) (any, error) {
	return func(obj any) (any, error) {
		var c *fieldCache
		switch o := obj.(type) {
		case *TPM:
			c = o.cel
		case *Boot:
			c = o.cel
		}
		if c == nil {
			return get(obj)
		}
		if v := c[slot]; v != nil {
			return v, nil
		}
		v, err := get(obj)
		if rv, ok := v.(ref.Val); ok && err == nil {
			c[slot] = rv
		}
		return v, err
	}
}
