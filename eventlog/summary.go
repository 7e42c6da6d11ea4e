package eventlog

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/google/go-eventlog/extract"
	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
)

// Summary is what a log says about the measured boot, in the words of PFP section 3.3.4
// (which PCR measures what). Every field is read from events whose digests replay to the
// values Replay computed, so a summary is only as trustworthy as a quote over those PCRs.
type Summary struct {
	// Format is "crypto-agile" or "legacy-sha1".
	Format string `json:"format"`
	// Banks are the banks the log declares; Bank the one summarised.
	Banks []Bank `json:"banks"`
	Bank  Bank   `json:"bank"`
	// Events counts all events, Measured those that extend a PCR.
	Events   int `json:"events"`
	Measured int `json:"measured"`
	// StartupLocality is the locality PCR0 started from (PFP 10.4.5.3).
	StartupLocality int `json:"startup_locality"`
	// PCRs are the replayed values of Bank, hex, by PCR index.
	PCRs map[string]string `json:"pcrs"`
	// SecureBoot is the UEFI Secure Boot state measured into PCR7 (PFP 3.3.4.8), when the log
	// has PCR7 events.
	SecureBoot *SecureBoot `json:"secure_boot,omitempty"`
	// Firmware is the platform firmware measured into PCR0 (PFP 3.3.4.1).
	Firmware *Firmware `json:"firmware,omitempty"`
	// BootLoader lists the UEFI applications measured into PCR4 (PFP 3.3.4.5).
	BootLoader *BootLoader `json:"boot_loader,omitempty"`
	// Kernel is what GRUB measured into PCR8 and PCR9 about the Linux kernel.
	Kernel *Kernel `json:"kernel,omitempty"`
	// Warnings say what could not be read and why (extraction refusals, vendor events).
	Warnings []string `json:"warnings,omitempty"`
}

// SecureBoot is the Secure Boot configuration a log measured.
type SecureBoot struct {
	// Enabled is the value of the SecureBoot variable (1 = on).
	Enabled bool `json:"enabled"`
	// Variables are the EV_EFI_VARIABLE_DRIVER_CONFIG events of PCR7, in log order
	// (SecureBoot, PK, KEK, db, dbx, ...).
	Variables []Variable `json:"variables"`
	// Authorities are the subjects of the certificates that EV_EFI_VARIABLE_AUTHORITY events
	// say verified boot components.
	Authorities []string `json:"authorities,omitempty"`
}

// Variable is one measured UEFI variable.
type Variable struct {
	Name string `json:"name"`
	GUID string `json:"guid"`
	// Size is the variable data's length in bytes.
	Size int `json:"size"`
	// Value is the data in hex when it is at most 8 bytes (SecureBoot, DeployedMode, ...).
	Value string `json:"value,omitempty"`
	// Certificates and Hashes count the entries of a signature database (PK, KEK, db, dbx).
	Certificates int `json:"certificates,omitempty"`
	Hashes       int `json:"hashes,omitempty"`
}

// Firmware is the platform firmware identity a log measured.
type Firmware struct {
	// Version is the EV_S_CRTM_VERSION string (UTF-16 decoded when it is UTF-16).
	Version string `json:"version,omitempty"`
	// GCEVersion is the Google Compute Engine virtual firmware version, when recognised.
	GCEVersion uint32 `json:"gce_version,omitempty"`
	// Blobs counts the EV_EFI_PLATFORM_FIRMWARE_BLOB(2) events.
	Blobs int `json:"blobs"`
}

// BootLoader lists the boot chain's UEFI applications.
type BootLoader struct {
	Applications []Application `json:"applications"`
}

// Application is one EV_EFI_BOOT_SERVICES_APPLICATION event.
type Application struct {
	// Event is its position in the log.
	Event int `json:"event"`
	// Path is the file path of its device path (untrusted: only the digest is measured).
	Path string `json:"path,omitempty"`
	// Digest is its Authenticode digest in the summarised bank, hex.
	Digest string `json:"digest"`
}

// Kernel is what the boot loader measured about the Linux kernel.
type Kernel struct {
	// Path is the kernel image GRUB loaded, from its kernel command line.
	Path string `json:"path,omitempty"`
	// CommandLine is the kernel command line GRUB measured into PCR8.
	CommandLine string `json:"command_line,omitempty"`
	// Files are the files GRUB measured into PCR9 (kernel, initrd, grub.cfg, ...), untrusted names.
	Files []string `json:"files,omitempty"`
}

// Summarise replays l on bank b and reads the measured-boot state from the events of the PCRs
// that replay: it re-parses raw with go-eventlog (tcg.ParseAndReplay against the computed
// values, which gives events bound to their digests) and runs go-eventlog's extract functions
// one by one (extract.SecureBootState, PlatformState, EfiState, GrubStateFromTPMLog), with the
// relaxations of a descriptive tool (an empty SecureBoot variable, applications before the
// "Calling EFI Application" action). What an extractor refuses becomes a warning, not an error.
// Events of types the TCG does not define (vendor events) are left out of the extraction
// (go-eventlog's extractors cannot handle them) and reported as warnings.
func Summarise(raw []byte, b Bank) (*Summary, error) {
	l, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	r, err := l.Replay(b)
	if err != nil {
		return nil, err
	}
	s := &Summary{Format: "legacy-sha1", Banks: l.Banks, Bank: b, Events: len(l.Events), Measured: r.Measured,
		StartupLocality: r.StartupLocality, PCRs: map[string]string{}}
	if l.CryptoAgile {
		s.Format = "crypto-agile"
	}
	for _, u := range r.Unparsed {
		s.Warnings = append(s.Warnings, fmt.Sprintf("event %d (PCR %d, %s) not replayed: %s", u.Seq, u.PCR, u.Type, u.Reason))
	}
	var mrs []register.MR
	for _, p := range r.Indexes() {
		s.PCRs[fmt.Sprint(p)] = hex.EncodeToString(r.PCRs[p])
		mrs = append(mrs, register.PCR{Index: p, Digest: r.PCRs[p], DigestAlg: b.Hash()})
	}
	events, err := tcg.ParseAndReplay(raw, mrs, tcg.ParseOpts{AllowPadding: true})
	if err != nil {
		// Our replay and go-eventlog's disagree: say so rather than summarise unbound events.
		s.Warnings = append(s.Warnings, "go-eventlog does not replay the log to the computed values: "+err.Error())
		return s, nil
	}
	known := events[:0:0]
	for _, e := range events {
		if _, ok := e.Type.KnownName(); !ok {
			s.Warnings = append(s.Warnings, fmt.Sprintf("event %d (PCR %d): vendor event type %s left out of the summary", e.Num(), e.Index, e.Type.TCGString()))
			continue
		}
		known = append(known, e)
	}
	opts := extract.Opts{AllowEmptySBVar: true, AllowEFIAppBeforeCallingEvent: true}
	s.SecureBoot = secureBoot(known, b, opts, &s.Warnings)
	s.Firmware = firmware(known, b, &s.Warnings)
	s.BootLoader = bootLoader(l, b)
	s.Kernel = kernel(known, b)
	return s, nil
}

func secureBoot(events []tcg.Event, b Bank, opts extract.Opts, warn *[]string) *SecureBoot {
	var sb SecureBoot
	seen := false
	for _, e := range events {
		if e.Index != 7 {
			continue
		}
		seen = true
		switch e.Type {
		case tcg.EFIVariableDriverConfig:
			v, err := tcg.ParseUEFIVariableData(bytes.NewReader(e.Data))
			if err != nil {
				*warn = append(*warn, fmt.Sprintf("event %d: UEFI variable: %v", e.Num(), err))
				continue
			}
			vr := Variable{Name: v.VarName(), GUID: guidString(v.Header.VariableName), Size: len(v.VariableData)}
			if len(v.VariableData) <= 8 {
				vr.Value = hex.EncodeToString(v.VariableData)
			}
			// Only signature databases are EFI_SIGNATURE_LISTs (and only theirs were walked by
			// Parse's structural checks).
			if IsSignatureDatabase(vr.Name) {
				if certs, hashes, err := v.SignatureData(); err == nil {
					vr.Certificates, vr.Hashes = len(certs), len(hashes)
				}
			}
			if vr.Name == "SecureBoot" && len(v.VariableData) == 1 {
				sb.Enabled = v.VariableData[0] == 1
			}
			sb.Variables = append(sb.Variables, vr)
		case tcg.EFIVariableAuthority:
			v, err := tcg.ParseUEFIVariableData(bytes.NewReader(e.Data))
			if err != nil {
				continue
			}
			if a, err := tcg.ParseUEFIVariableAuthority(v); err == nil {
				for _, c := range a.Certs {
					sb.Authorities = append(sb.Authorities, subject(c))
				}
			}
		}
	}
	if !seen {
		return nil
	}
	st, err := extract.SecureBootState(events, extract.TPMRegisterConfig, opts)
	if err != nil {
		*warn = append(*warn, "secure boot: go-eventlog refuses the PCR7 events: "+err.Error())
	} else if st.GetEnabled() != sb.Enabled {
		*warn = append(*warn, "secure boot: go-eventlog and the SecureBoot variable disagree")
		sb.Enabled = false
	}
	return &sb
}

func subject(c x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return c.Subject.CommonName
	}
	return c.Subject.String()
}

func guidString(g interface{ String() string }) string { return g.String() }

func firmware(events []tcg.Event, b Bank, warn *[]string) *Firmware {
	var fw Firmware
	seen := false
	for _, e := range events {
		if e.Index != 0 {
			continue
		}
		seen = true
		switch e.Type {
		case tcg.SCRTMVersion:
			fw.Version = text(e.Data)
		case tcg.EFIPlatformFirmwareBlob, tcg.EFIPlatformFirmwareBlob2:
			fw.Blobs++
		}
	}
	if !seen {
		return nil
	}
	ps, err := extract.PlatformState(b.Hash(), events)
	if err != nil {
		*warn = append(*warn, "firmware: go-eventlog refuses the PCR0 events: "+err.Error())
	} else if v := ps.GetGceVersion(); v != 0 {
		fw.GCEVersion = v
	}
	return &fw
}

// bootLoader lists PCR4's EV_EFI_BOOT_SERVICES_APPLICATION events with their device path's
// file name (UEFI 2.x section 10.3.5.4, media device path, file path node: type 4, subtype 4,
// a NUL-terminated UTF-16 path).
func bootLoader(l *Log, b Bank) *BootLoader {
	var bl BootLoader
	for _, e := range l.Events {
		if e.PCR != 4 || e.Type != tcg.EFIBootServicesApplication {
			continue
		}
		app := Application{Event: e.Seq, Digest: hex.EncodeToString(e.Digests[b])}
		if il, err := tcg.ParseEFIImageLoad(bytes.NewReader(e.Data)); err == nil {
			if dp, err := il.DevicePath(); err == nil {
				var parts []string
				for _, el := range dp {
					if el.Type == tcg.MediaDevice && el.Subtype == 4 {
						parts = append(parts, text(el.Data))
					}
				}
				app.Path = strings.Join(parts, "")
			}
		}
		bl.Applications = append(bl.Applications, app)
	}
	if len(bl.Applications) == 0 {
		return nil
	}
	return &bl
}

func kernel(events []tcg.Event, b Bank) *Kernel {
	g, err := extract.GrubStateFromTPMLog(b.Hash(), events)
	if err != nil {
		return nil
	}
	var k Kernel
	for _, f := range g.GetFiles() {
		k.Files = append(k.Files, strings.TrimRight(string(f.GetUntrustedFilename()), "\x00"))
	}
	if ks, err := extract.LinuxKernelStateFromGRUB(g); err == nil {
		k.CommandLine = strings.TrimRight(ks.GetCommandLine(), "\x00")
		if f := strings.Fields(k.CommandLine); len(f) > 0 && (strings.HasPrefix(f[0], "/") || strings.HasPrefix(f[0], "(")) {
			k.Path = f[0]
		}
	}
	return &k
}

// text renders event data as a string: UTF-16LE when it looks like it (even length, every
// other byte zero), else UTF-8 with invalid bytes replaced; trailing NULs are dropped.
func text(b []byte) string {
	if len(b) >= 2 && len(b)%2 == 0 && b[1] == 0 {
		u := make([]uint16, 0, len(b)/2)
		for i := 0; i+1 < len(b); i += 2 {
			u = append(u, uint16(b[i])|uint16(b[i+1])<<8)
		}
		return strings.TrimRight(string(utf16.Decode(u)), "\x00")
	}
	s := strings.TrimRight(string(b), "\x00")
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}
