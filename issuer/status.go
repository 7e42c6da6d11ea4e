package issuer

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/refvalues"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/token"
)

// statusGrace extends every status entry past its token's exp by more than the largest leeway
// a relying party may allow (relyingparty.MaxLeeway, 2.5 min): a token still accepted
// somewhere can still be revoked.
const statusGrace = 5 * time.Minute

// clockTTL is how long a TPM's clock record is kept after its last quote.
const clockTTL = 30 * 24 * time.Hour

// Errors of the revocation API.
var (
	// ErrNotRevocable is returned by Revoke for a jti that names no live token.
	ErrNotRevocable = errors.New("issuer: no live token with this jti")
	// ErrStatusListUnknown is returned by StatusListToken for a list that does not exist.
	ErrStatusListUnknown = errors.New("issuer: unknown status list")
)

// statusState is the Issuer's status-list machinery: the store, the cache of signed Status
// List Tokens and the hub of revocation event streams.
type statusState struct {
	store     store.StatusStore
	foldClock bool // Clocks is the status store: AllocateStatus checks the TPM clock

	mu    sync.Mutex
	cache map[uint64]*signedList

	hub *revocationHub
}

// signedList is a Status List Token as last signed.
type signedList struct {
	digest [sha256.Size]byte // of the list bytes it carries
	token  string
	etag   string
	iat    time.Time
	kid    string
}

func newStatusState(cfg *Config) (*statusState, error) {
	if cfg.Status == nil {
		s, ok := cfg.Nonces.(store.StatusStore)
		if !ok {
			return nil, errors.New("issuer: a status store is required (every token carries a status list entry)")
		}
		cfg.Status = s
	}
	if cfg.Revocations == nil {
		cfg.Revocations, _ = cfg.Status.(store.RevocationFeed)
	}
	if cfg.StatusTTL <= 0 {
		cfg.StatusTTL = DefaultStatusTTL
	}
	if cfg.StatusListValidity <= 0 {
		cfg.StatusListValidity = DefaultStatusListValidity
	}
	if cfg.StreamLifetime <= 0 {
		cfg.StreamLifetime = DefaultStreamLifetime
	}
	if cfg.StatusListValidity < cfg.StatusTTL {
		return nil, fmt.Errorf("issuer: status list validity %v is shorter than its ttl %v", cfg.StatusListValidity, cfg.StatusTTL)
	}
	st := &statusState{
		store:     cfg.Status,
		foldClock: cfg.Clocks != nil && sameObject(cfg.Clocks, cfg.Status),
		cache:     map[uint64]*signedList{},
	}
	if cfg.Revocations != nil {
		st.hub = newRevocationHub(cfg.Revocations, cfg.Log)
	}
	return st, nil
}

// sameObject reports whether a and b are the same pointer.
func sameObject(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	return va.Kind() == reflect.Pointer && vb.Kind() == reflect.Pointer && va.Type() == vb.Type() && va.Pointer() == vb.Pointer()
}

// StatusListURI returns the URI of status list id: the uri of its tokens' status_list claim
// and the sub of its Status List Token.
func (is *Issuer) StatusListURI(id uint64) string {
	return is.cfg.URL + api.PathStatusList + "/" + strconv.FormatUint(id, 10)
}

// allocateStatus reserves the token's status list entry (recorded by jti, by subject and by
// each matched reference value and, when the appraisal asks for it (RecordMeasured), each
// event digest it vouched for (policy.Measured), until the token expires plus statusGrace)
// and sets its status claim. With a folded clock store the TPM clock check runs in the same call. Errors
// wrap store.ErrUnavailable (503: no token without its entry) or ErrClockRollback, or are a
// *PolicyError when a label was revoked concurrently (store.ErrLabelRevoked).
func (is *Issuer) allocateStatus(ctx context.Context, c *token.Claims, st *evidence.State, ap *policy.Appraisal) error {
	e := store.StatusEntry{ID: c.ID, Subject: c.Subject, Expires: c.Expires().Add(statusGrace)}
	var measured []string
	if ap.RecordMeasured {
		measured = policy.Measured(st)
	}
	for _, rv := range slices.Concat(ap.ReferenceValues, measured) {
		e.Labels = append(e.Labels, strings.ToLower(rv))
	}
	slices.Sort(e.Labels)
	e.Labels = slices.Compact(e.Labels)
	if is.status.foldClock {
		e.Clock = &store.ClockAdvance{AK: st.AKID, Info: st.Clock, TTL: clockTTL}
	}
	ref, err := is.status.store.AllocateStatus(ctx, e)
	switch {
	case errors.Is(err, store.ErrClockRollback):
		return fmt.Errorf("%w: %w", ErrClockRollback, err)
	case errors.Is(err, store.ErrLabelRevoked):
		// Revoked after this issuer's (or a replica's) policy snapshot was taken: the store
		// refuses it atomically with the revocation, so no token escapes it.
		return &PolicyError{PolicyID: ap.PolicyID, Failures: []policy.Failure{{Rule: policy.RevokedRule,
			Claim: token.ClaimExecutables, Value: token.ValueContraindicated,
			Reason: "the evidence carries a reference value revoked while it was being appraised"}}}
	case err != nil:
		return fmt.Errorf("issuer: status list entry: %w", err)
	}
	c.Status = &token.Status{StatusList: token.StatusListRef{Index: ref.Index, URI: is.StatusListURI(ref.List)}}
	return nil
}

// StatusListToken returns the Status List Token of list id (draft-ietf-oauth-status-list
// section 5.1: typ statuslist+jwt, iss, sub = the list's URI, iat, exp, ttl, status_list with
// one bit per entry), its ETag and how long it may be cached. The list is read from the store
// on every call; the token is signed again only when the list changed, the signing key
// changed, or it is older than half its ttl. Errors wrap ErrStatusListUnknown or
// store.ErrUnavailable.
func (is *Issuer) StatusListToken(ctx context.Context, id uint64) (tok, etag string, maxAge time.Duration, err error) {
	b, err := is.status.store.ReadStatusList(ctx, id)
	if errors.Is(err, store.ErrStatusListUnknown) {
		return "", "", 0, fmt.Errorf("%w: %d", ErrStatusListUnknown, id)
	}
	if err != nil {
		return "", "", 0, fmt.Errorf("issuer: status list %d: %w", id, err)
	}
	digest := sha256.Sum256(b)
	now := is.cfg.Now()
	active, err := is.cfg.Keyring.Active()
	if err != nil {
		return "", "", 0, fmt.Errorf("issuer: %w", err)
	}
	is.status.mu.Lock()
	defer is.status.mu.Unlock()
	sl := is.status.cache[id]
	if sl == nil || sl.digest != digest || sl.kid != active.KeyID || now.Sub(sl.iat) >= is.cfg.StatusTTL/2 || now.Before(sl.iat) {
		if sl, err = is.signStatusList(id, b, digest, now); err != nil {
			return "", "", 0, err
		}
		is.status.cache[id] = sl
	}
	return sl.token, sl.etag, max(0, is.cfg.StatusTTL-now.Sub(sl.iat)), nil
}

func (is *Issuer) signStatusList(id uint64, b []byte, digest [sha256.Size]byte, now time.Time) (*signedList, error) {
	lst, err := token.EncodeStatusList(1, b)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	claims := token.StatusListClaims{
		Issuer:     is.cfg.URL,
		Subject:    is.StatusListURI(id),
		IssuedAt:   now.Unix(),
		Expiry:     now.Add(is.cfg.StatusListValidity).Unix(),
		TTL:        int64(is.cfg.StatusTTL / time.Second),
		StatusList: lst,
	}
	tok, kid, err := is.cfg.Keyring.SignTyped(token.StatusListType, claims)
	if err != nil {
		return nil, fmt.Errorf("issuer: sign status list: %w", err)
	}
	sum := sha256.Sum256([]byte(tok))
	return &signedList{digest: digest, token: tok, kid: kid, iat: time.Unix(claims.IssuedAt, 0),
		etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`}, nil
}

// Revoke sets to invalid the status of every live token sel picks: one token by jti
// (sel.ID), every token of an attester by its sub (sel.Subject), or every token whose
// evidence carried a digest (sel.Label, a hex SHA-1/256/384/512 digest: a matched reference
// value or a measured digest the issuer recorded). A label revocation also makes the store
// refuse new tokens carrying it until ReinstateReferenceValue. The bits are visible in the
// next Status List Token of every issuer sharing the store, and pushed to connected relying
// parties. A jti naming no live token is ErrNotRevocable; other selectors may revoke nothing.
// Errors also wrap ErrBadRequest or store.ErrUnavailable.
func (is *Issuer) Revoke(ctx context.Context, sel store.Selector) (*api.RevokeResponse, error) {
	if err := sel.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if sel.Label != "" {
		// The store revokes the label itself too, until it is reinstated, which takes digests
		// only: refuse what could never be lifted.
		d, err := refvalues.NormalizeDigest(sel.Label)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
		}
		sel.Label = d
	}
	revs, err := is.status.store.RevokeStatus(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("issuer: revoke: %w", err)
	}
	res := &api.RevokeResponse{Revoked: []api.RevokedList{}}
	for _, r := range revs {
		res.Revoked = append(res.Revoked, api.RevokedList{URI: is.StatusListURI(r.List), Indexes: r.Indexes})
		res.Count += len(r.Indexes)
	}
	if sel.ID != "" && res.Count == 0 {
		return nil, ErrNotRevocable
	}
	kind := "subject"
	switch {
	case sel.ID != "":
		kind = "jti"
	case sel.Label != "":
		kind = "reference_value"
	}
	is.cfg.Log.InfoContext(ctx, "tokens revoked", "by", kind, "count", res.Count)
	return res, nil
}
