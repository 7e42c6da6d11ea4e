package policy

import (
	"bytes"
	"crypto"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"math/bits"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-eventlog/extract"
	"github.com/google/go-eventlog/tcg"
	pb "github.com/google/go-tpm-tools/proto/attest"

	"github.com/passport-attest/passport/evidence"
)

// The input a rule sees: the CEL variables pcrs, tpm, boot, ak, clock and refs, built once per
// evaluation from an evidence.State (docs/POLICY.md documents every field with examples). All
// digests are lowercase hex of the verified bank (SHA-256).

// Boot is the CEL variable boot: the measured-boot state go-tpm-tools extracted from the
// replayed event log (TCG PC Client Platform Firmware Profile), plus what passport derives from
// the verified events. Event data other than digests is untrusted unless noted.
type Boot struct {
	// SecureBoot: UEFI Secure Boot enabled (the SecureBoot variable measured in PCR 7).
	SecureBoot bool `cel:"secure_boot"`
	// DBXCount: number of hashes and certificates in the measured dbx (revoked boot binaries).
	DBXCount int64 `cel:"dbx_count"`
	// Firmware: digests of the PCR 0 events other than separators (S-CRTM version and contents,
	// platform firmware blobs, non-host information), in log order.
	Firmware []string `cel:"firmware"`
	// GCEFirmwareVersion: the GCE virtual firmware version (0 elsewhere).
	GCEFirmwareVersion int64 `cel:"gce_firmware_version"`
	// ConfidentialTechnology: "NONE", "AMD_SEV", "AMD_SEV_ES", "AMD_SEV_SNP", "INTEL_TDX" on GCE,
	// "" when the log does not say.
	ConfidentialTechnology string `cel:"confidential_technology"`
	// EFIApps: digests (Authenticode) of every EV_EFI_BOOT_SERVICES_APPLICATION in PCR 4.
	EFIApps []string `cel:"efi_apps"`
	// Bootloaders: the EFI applications started before the boot loader's first PCR 8/9
	// measurement (shim, GRUB); all of EFIApps when GRUB measured nothing.
	Bootloaders []string `cel:"bootloaders"`
	// Kernel: digest of the kernel GRUB loaded (the PCR 9 file named by the kernel command
	// line, or GRUB's "grub_linuxefi Kernel" event); "" when it cannot be told.
	Kernel string `cel:"kernel"`
	// KernelCmdline: the kernel command line GRUB measured in PCR 8, checked against its
	// digest (trusted); "" when absent, ambiguous or not matching its digest.
	KernelCmdline string `cel:"kernel_cmdline"`
	// KernelCmdlineDigest: that event's digest ("" with KernelCmdline).
	KernelCmdlineDigest string `cel:"kernel_cmdline_digest"`
	// GRUBCommands: every command GRUB measured in PCR 8, each checked against its digest by
	// go-eventlog (empty when one does not match).
	GRUBCommands []string `cel:"grub_commands"`
	// GRUBFiles: digests of the files GRUB measured in PCR 9 (configuration, modules, kernel,
	// initrd), in log order.
	GRUBFiles []string `cel:"grub_files"`
	// Events: digests of every measured event by TCG event type name, e.g.
	// boot.events["EV_EFI_BOOT_SERVICES_APPLICATION"], in log order.
	Events map[string][]string `cel:"events"`

	cel *fieldCache // the CEL values of the list and map fields, when an evaluation caches them
}

// AK is the CEL variable ak: the attestation key.
type AK struct {
	// ID: RFC 7638 thumbprint of the AK public key (the token's sub); "" without a quote.
	ID string `cel:"id"`
	// Trust: how the AK was trusted: "allowlist", "certificate", "enrolled", "any"
	// (--trust-any-ak: not at all), "" without a quote (a bare event log).
	Trust string `cel:"trust"`
}

// Clock is the CEL variable clock: TPMS_CLOCK_INFO of the quote (TPM 2.0 Part 2 section
// 10.11.1); zero without a quote.
type Clock struct {
	Clock        int64 `cel:"clock"` // milliseconds the TPM has been powered since its last clear
	ResetCount   int64 `cel:"reset_count"`
	RestartCount int64 `cel:"restart_count"`
}

// TPM is the CEL variable tpm.
type TPM struct {
	// Bank: the verified PCR bank, "sha256" (or "sha1" where allowed).
	Bank string `cel:"bank"`
	// LoggedPCRs: the PCRs the event log has events for, ascending.
	LoggedPCRs []int64 `cel:"logged_pcrs"`
	// FirmwareVersion: the TPM's firmware version from the quote (0 without a quote).
	FirmwareVersion uint64 `cel:"firmware_version"`

	cel *fieldCache // the CEL value of LoggedPCRs, when an evaluation caches it
}

// needs says which costly parts of the input some rule reads: every PCR value (pcrs) or only
// those of pcrMask (bit i for PCR i, read as pcrs.<bank>["i"]), the events by type, GRUB's
// commands and files, the kernel and its command line, and the firmware, EFI application and
// boot loader lists (lists).
type needs struct {
	pcrs, events, grubCommands, grubFiles, kernel, lists bool
	pcrMask                                              uint32
	// eventTypes lists the event types read as boot.events["NAME"] (all when events is set).
	eventTypes []uint32
}

func (n needs) or(m needs) needs {
	out := needs{n.pcrs || m.pcrs, n.events || m.events, n.grubCommands || m.grubCommands, n.grubFiles || m.grubFiles, n.kernel || m.kernel,
		n.lists || m.lists, n.pcrMask | m.pcrMask, slices.Clone(n.eventTypes)}
	for _, t := range m.eventTypes {
		if !slices.Contains(out.eventTypes, t) {
			out.eventTypes = append(out.eventTypes, t)
		}
	}
	return out
}

var allNeeds = needs{true, true, true, true, true, true, 0, nil}

// walkEvents reports whether the raw events must be walked at all.
func (n needs) walkEvents() bool {
	return n.lists || n.kernel || n.grubFiles || n.events || len(n.eventTypes) > 0
}

// eventTypeCodes maps TCG event type names (TCG PC Client PFP section 10.4.1) to their codes.
var eventTypeCodes = func() map[string]uint32 {
	m := map[string]uint32{}
	for _, base := range []uint32{0, 0x80000000} {
		for c := base; c <= base+0xff; c++ {
			if name := tcg.EventType(c).TCGString(); !strings.HasPrefix(name, "EventType(") {
				m[name] = c
			}
		}
	}
	return m
}()

// input is one evaluation's variables. The PCR values (pcrs) are hex-encoded when a rule
// evaluated by CEL reads them (pcrMap): the native checks compare raw digests.
type input struct {
	pcrs  map[string]map[string]string
	tpm   *TPM
	boot  *Boot
	ak    *AK
	clock *Clock
	s     *evidence.State
	n     needs
	box   *inputBox // where the input lives (release)
}

const (
	evIPL      = uint32(tcg.Ipl)
	evEventTag = uint32(tcg.EventTag)
	evBSA      = uint32(tcg.EFIBootServicesApplication)
	evSep      = uint32(tcg.Separator)
)

// pcrMap returns the CEL value of pcrs: {bank: {"<index>": hex}}, with every PCR value of the
// quote (needs.pcrs) or those of needs.pcrMask, built on first use.
func (in *input) pcrMap() map[string]map[string]string {
	if in.pcrs != nil {
		return in.pcrs
	}
	s, n := in.s, in.n
	var idxs []uint32
	switch {
	case !n.pcrs && n.pcrMask == 0:
		// No rule reads a PCR value.
	case n.pcrs:
		for idx := range s.PCRs {
			idxs = append(idxs, idx)
		}
	default:
		for mask := n.pcrMask; mask != 0; mask &= mask - 1 {
			idx := uint32(bits.TrailingZeros32(mask))
			if _, ok := s.PCRs[idx]; ok {
				idxs = append(idxs, idx)
			}
		}
	}
	size := 0
	for _, idx := range idxs {
		size += 2 * len(s.PCRs[idx])
	}
	buf := make([]byte, size)
	off := 0
	for _, idx := range idxs {
		off += hex.Encode(buf[off:], s.PCRs[idx])
	}
	all := string(buf) // one string for all the values
	m := make(map[string]string, len(idxs))
	off = 0
	for _, idx := range idxs {
		l := 2 * len(s.PCRs[idx])
		m[strconv.Itoa(int(idx))] = all[off : off+l]
		off += l
	}
	in.pcrs = map[string]map[string]string{s.Bank: m}
	return in.pcrs
}

// buildInput derives the rule input from s, computing only what n asks for beyond the cheap
// fields. Digests are hex-encoded into one string (hexer) and the input and its lists come
// from a pool (release), so that an evaluation allocates a few objects, not hundreds.
func buildInput(s *evidence.State, n needs) *input {
	x := inputBoxes.Get().(*inputBox)
	x.in = input{s: s, n: n, box: x}
	x.tpm.Bank, x.tpm.FirmwareVersion = s.Bank, s.FirmwareVersion
	x.ak = AK{ID: s.AKID, Trust: string(s.AKTrust)}
	x.clock = Clock{Clock: int64(s.Clock.Clock), ResetCount: int64(s.Clock.ResetCount), RestartCount: int64(s.Clock.RestartCount)}
	in := &x.in
	in.tpm, in.ak, in.clock, in.boot = &x.tpm, &x.ak, &x.clock, &x.boot
	x.tpm.cel, x.boot.cel = &x.cel, &x.cel
	for _, p := range s.LoggedPCRs {
		in.tpm.LoggedPCRs = append(in.tpm.LoggedPCRs, int64(p))
	}
	b, ms := in.boot, s.Machine
	events := ms.GetRawEvents()
	b.SecureBoot = ms.GetSecureBoot().GetEnabled()
	dbx := ms.GetSecureBoot().GetDbx()
	b.DBXCount = int64(len(dbx.GetHashes()) + len(dbx.GetCerts()))
	if p := ms.GetPlatform(); p != nil {
		b.GCEFirmwareVersion = int64(p.GetGceVersion())
		b.ConfidentialTechnology = p.GetTechnology().String()
	}
	if !n.walkEvents() {
		return in
	}
	h := hexers.Get().(*hexer)
	defer h.release()
	anyTypes := n.events || len(n.eventTypes) > 0
	if anyTypes && x.byType == nil {
		x.byType = map[uint32]*[]string{}
	}
	cmd, cmdText, cmdlines := x.walk(events, n, h)
	pcr9 := x.pcr9
	if n.kernel && cmdlines == 1 { // more than one kernel command line is ambiguous: tell nothing
		kernelState(b, events, cmd, cmdText, pcr9, hashOf(s.Bank), h)
	}
	h.flush()
	if anyTypes {
		if b.Events == nil {
			b.Events = make(map[string][]string, len(x.byType))
		}
		for typ, l := range x.byType {
			b.Events[tcg.EventType(typ).TCGString()] = *l
		}
	}
	if n.grubCommands {
		b.GRUBCommands = grubCommands(events, hashOf(s.Bank))
	}
	return in
}

func hashOf(bank string) crypto.Hash {
	if bank == "sha1" {
		return crypto.SHA1
	}
	return crypto.SHA256
}

var cmdlinePrefixes = [][]byte{[]byte("kernel_cmdline: "), []byte("grub_kernel_cmdline ")}

// cmdlineText returns the text of a GRUB kernel command line event (PCR 8 EV_IPL data
// starting "kernel_cmdline: " or, from older GRUBs, "grub_kernel_cmdline ").
func cmdlineText(data []byte) ([]byte, bool) {
	if len(data) < 6 || (data[0] != 'k' && data[5] != 'k') { // cheap reject of grub_cmd events
		return nil, false
	}
	for _, p := range cmdlinePrefixes {
		if bytes.HasPrefix(data, p) {
			return data[len(p):], true
		}
	}
	return nil, false
}

// kernelState records the kernel command line GRUB measured in PCR 8 (events[cmd]) when its
// digest is the hash of its text (with or without the NUL terminator, as go-eventlog's extract
// package checks it), and the digest of the kernel file it names among GRUB's PCR 9
// measurements (events[pcr9[i]]).
func kernelState(b *Boot, events []*pb.Event, cmd int, text []byte, pcr9 []int, hash crypto.Hash, h *hexer) {
	if !digestOf(hash, text, events[cmd].GetDigest()) {
		return
	}
	line := string(bytes.TrimRight(text, "\x00"))
	b.KernelCmdline = line
	h.toString(&b.KernelCmdlineDigest, events[cmd].GetDigest())
	path, _, _ := strings.Cut(line, " ")
	if _, after, ok := strings.Cut(path, ")"); ok && strings.HasPrefix(path, "(") {
		path = after
	}
	for i := len(pcr9) - 1; i >= 0; i-- {
		e := events[pcr9[i]]
		name := bytes.TrimRight(e.GetData(), "\x00")
		if _, after, ok := bytes.Cut(name, []byte(")")); ok && bytes.HasPrefix(name, []byte("(")) {
			name = after
		}
		if (path != "" && string(name) == path) || string(name) == "grub_linuxefi Kernel" {
			h.toString(&b.Kernel, e.GetDigest())
			return
		}
	}
}

// digestOf reports whether digest is h(data), or h(data without its trailing NUL).
func digestOf(h crypto.Hash, data, digest []byte) bool {
	if !h.Available() {
		return false
	}
	if hashIs(h, data, digest) {
		return true
	}
	if len(data) > 0 && data[len(data)-1] == 0 {
		return hashIs(h, data[:len(data)-1], digest)
	}
	return false
}

// hashIs reports whether digest is h(data), hashing on the stack for SHA-256 and SHA-1 (the
// banks passport reads).
func hashIs(h crypto.Hash, data, digest []byte) bool {
	switch h {
	case crypto.SHA256:
		s := sha256.Sum256(data)
		return bytes.Equal(s[:], digest)
	case crypto.SHA1:
		s := sha1.Sum(data)
		return bytes.Equal(s[:], digest)
	}
	hh := h.New()
	hh.Write(data)
	return bytes.Equal(hh.Sum(nil), digest)
}

// grubCommands returns GRUB's PCR 8 commands through go-eventlog's extract package, which checks
// each command against its digest; nil when GRUB measured nothing or anything does not check.
func grubCommands(events []*pb.Event, h crypto.Hash) []string {
	var tev []tcg.Event
	for _, e := range events {
		idx, typ := e.GetPcrIndex(), e.GetUntrustedType()
		if idx != 8 && idx != 9 {
			continue
		}
		if typ != evIPL && typ != evEventTag {
			return nil // the extractor would refuse it (and panics on unknown types)
		}
		tev = append(tev, tcg.Event{Index: int(idx), Type: tcg.EventType(typ), Data: e.GetData(), Digest: e.GetDigest()})
	}
	if len(tev) == 0 {
		return nil
	}
	g, err := extract.GrubStateFromTPMLog(h, tev)
	if err != nil {
		return nil
	}
	out := make([]string, len(g.GetCommands()))
	for i, c := range g.GetCommands() {
		out[i] = strings.TrimRight(c, "\x00")
	}
	return out
}
