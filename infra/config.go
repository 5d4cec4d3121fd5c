package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sessionha/sessionha/infra/topology"
)

// Config is what the app deploys: read from cdk.json's context by ConfigFromContext, or
// built directly by the tests.
type Config struct {
	// Table is the session table's name, the same in every region. Default
	// topology.DefaultTable (context key "table").
	Table string
	// Sites, one stack each (context key "sites"). Exactly one is primary: its stack
	// holds the global table; the others' stacks deploy after it.
	Sites []SiteConfig
	// AssetDir holds each function's bootstrap as AssetDir/<function ID>/bootstrap
	// (bin/lambda, written by `make build`).
	AssetDir string
}

// SiteConfig is one entry of the context's "sites" list.
type SiteConfig struct {
	Name   string `json:"name"`
	Region string `json:"region"`
	// Account to deploy to; "" means the CLI's current credentials' account
	// (CDK_DEFAULT_ACCOUNT), left unresolved for synth without credentials.
	Account  string       `json:"account"`
	Primary  bool         `json:"primary"`
	Settings SiteSettings `json:"settings"`
}

// SiteSettings are a site's knobs; zero or absent means the default. The first group maps
// onto topology.Settings (so the local stack takes the same ones), the second is only
// for AWS. Durations are Go duration strings such as "90s" or "5m".
type SiteSettings struct {
	// The topology's settings: see topology.Settings for each one's meaning and default.
	BatchSize         int      `json:"batchSize"`
	BatchingWindow    Duration `json:"batchingWindow"`
	MaxConcurrency    int      `json:"maxConcurrency"`
	FunctionTimeout   Duration `json:"functionTimeout"`
	VisibilityTimeout Duration `json:"visibilityTimeout"`
	MaxReceiveCount   int      `json:"maxReceiveCount"`
	TombstoneGrace    Duration `json:"tombstoneGrace"`
	RetryBase         Duration `json:"retryBase"`
	RetryMax          Duration `json:"retryMax"`
	QueryMaxAge       Duration `json:"queryMaxAge"`
	ClockTolerance    Duration `json:"clockTolerance"`

	// MemoryMB of each function. Default 256: Go needs little memory, but Lambda's CPU
	// share grows with it and the functions are latency-bound.
	MemoryMB int `json:"memoryMB"`
	// LogRetentionDays of the functions' log groups; one of CloudWatch's allowed values.
	// Default 30.
	LogRetentionDays int `json:"logRetentionDays"`
	// OldestMessageAlarm is the age of a source queue's oldest message that raises its
	// alarm: the functions are falling behind or failing. Default 5m.
	OldestMessageAlarm Duration `json:"oldestMessageAlarm"`
}

// Duration is a time.Duration written in JSON as a Go duration string.
type Duration time.Duration

// UnmarshalJSON reads a Go duration string such as "90s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a duration string such as \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Topology returns the topology settings, as the local stack would take them.
func (s SiteSettings) Topology() topology.Settings {
	return topology.Settings{
		BatchSize:         s.BatchSize,
		BatchingWindow:    time.Duration(s.BatchingWindow),
		MaxConcurrency:    s.MaxConcurrency,
		FunctionTimeout:   time.Duration(s.FunctionTimeout),
		VisibilityTimeout: time.Duration(s.VisibilityTimeout),
		MaxReceiveCount:   s.MaxReceiveCount,
		TombstoneGrace:    time.Duration(s.TombstoneGrace),
		RetryBase:         time.Duration(s.RetryBase),
		RetryMax:          time.Duration(s.RetryMax),
		QueryMaxAge:       time.Duration(s.QueryMaxAge),
		ClockTolerance:    time.Duration(s.ClockTolerance),
	}
}

// withDefaults fills the AWS-only settings' zero values.
func (s SiteSettings) withDefaults() SiteSettings {
	if s.MemoryMB == 0 {
		s.MemoryMB = 256
	}
	if s.LogRetentionDays == 0 {
		s.LogRetentionDays = 30
	}
	if s.OldestMessageAlarm == 0 {
		s.OldestMessageAlarm = Duration(5 * time.Minute)
	}
	return s
}

// Site is the topology site of this entry.
func (s SiteConfig) Site() topology.Site {
	return topology.Site{Name: s.Name, Region: s.Region, Primary: s.Primary, Settings: s.Settings.Topology()}
}

// ConfigFromContext reads the "sites" and "table" context values, as the CDK hands them
// over from cdk.json (decoded JSON). Unknown fields are errors: a misspelt setting must
// not silently deploy the default.
func ConfigFromContext(sites, table any) (Config, error) {
	var c Config
	if sites == nil {
		return c, errors.New(`cdk.json's context has no "sites" list: run the app through the CDK CLI (make synth), which passes cdk.json's context`)
	}
	raw, err := json.Marshal(sites)
	if err != nil {
		return c, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c.Sites); err != nil {
		return c, fmt.Errorf(`cdk.json: context "sites": %w`, err)
	}
	if table != nil {
		name, ok := table.(string)
		if !ok {
			return c, fmt.Errorf(`cdk.json: context "table" is %T, want a string`, table)
		}
		c.Table = name
	}
	return c, c.Validate()
}

// Validate checks what the topology cannot: one primary, unique names, and the AWS-only
// settings.
func (c Config) Validate() error {
	if len(c.Sites) == 0 {
		return errors.New("no sites: cdk.json's context needs a \"sites\" list")
	}
	primaries := 0
	seen := map[string]bool{}
	account := ""
	for _, s := range c.Sites {
		// A global table's replicas live in one account.
		if s.Account != "" {
			if account != "" && s.Account != account {
				return fmt.Errorf("site %q: account %s, but another site's is %s: the sites share one global table, which lives in one account", s.Name, s.Account, account)
			}
			account = s.Account
		}
		if _, err := topology.For(s.Site(), c.Table); err != nil {
			return err
		}
		if seen[s.Name] {
			return fmt.Errorf("site %q listed twice", s.Name)
		}
		seen[s.Name] = true
		if s.Primary {
			primaries++
		}
		st := s.Settings
		for name, d := range map[string]Duration{"batchingWindow": st.BatchingWindow, "functionTimeout": st.FunctionTimeout,
			"visibilityTimeout": st.VisibilityTimeout, "oldestMessageAlarm": st.OldestMessageAlarm} {
			if time.Duration(d)%time.Second != 0 {
				return fmt.Errorf("site %q: %s %s: AWS takes whole seconds", s.Name, name, time.Duration(d))
			}
		}
		switch {
		case st.MemoryMB != 0 && (st.MemoryMB < 128 || st.MemoryMB > 10240):
			return fmt.Errorf("site %q: memoryMB %d out of range 128-10240", s.Name, st.MemoryMB)
		case st.OldestMessageAlarm < 0:
			return fmt.Errorf("site %q: oldestMessageAlarm is negative", s.Name)
		case st.LogRetentionDays != 0 && !validRetention[st.LogRetentionDays]:
			return fmt.Errorf("site %q: logRetentionDays %d is not one CloudWatch Logs accepts", s.Name, st.LogRetentionDays)
		}
	}
	if primaries != 1 {
		return fmt.Errorf("%d primary sites, want exactly one: its stack holds the global table", primaries)
	}
	return nil
}

// validRetention are CloudWatch Logs' retention periods in days.
var validRetention = map[int]bool{1: true, 3: true, 5: true, 7: true, 14: true, 30: true, 60: true, 90: true,
	120: true, 150: true, 180: true, 365: true, 400: true, 545: true, 731: true, 1096: true, 1827: true,
	2192: true, 2557: true, 2922: true, 3288: true, 3653: true}

// primary returns the primary site.
func (c Config) primary() SiteConfig {
	for _, s := range c.Sites {
		if s.Primary {
			return s
		}
	}
	return SiteConfig{}
}
