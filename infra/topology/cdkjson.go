package topology

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"
)

// Deployment is what cdk.json's context says to deploy: the table and the sites. The
// CDK app reads it strictly (infra/config.go: AWS-only settings, accounts); the local
// stack reads it here, taking each site's name, region, primary flag and the topology's
// settings, and leaving the AWS-only ones to the CDK app.
type Deployment struct {
	Table string // "" for DefaultTable
	Sites []Site
}

// ReadCDKJSON reads the deployment from a cdk.json file.
func ReadCDKJSON(path string) (Deployment, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Deployment{}, err
	}
	var f struct {
		Context struct {
			Table string `json:"table"`
			Sites []struct {
				Name     string `json:"name"`
				Region   string `json:"region"`
				Primary  bool   `json:"primary"`
				Settings struct {
					BatchSize         int      `json:"batchSize"`
					BatchingWindow    duration `json:"batchingWindow"`
					MaxConcurrency    int      `json:"maxConcurrency"`
					FunctionTimeout   duration `json:"functionTimeout"`
					VisibilityTimeout duration `json:"visibilityTimeout"`
					MaxReceiveCount   int      `json:"maxReceiveCount"`
					TombstoneGrace    duration `json:"tombstoneGrace"`
					RetryBase         duration `json:"retryBase"`
					RetryMax          duration `json:"retryMax"`
					QueryMaxAge       duration `json:"queryMaxAge"`
				} `json:"settings"`
			} `json:"sites"`
		} `json:"context"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return Deployment{}, fmt.Errorf("%s: %w", path, err)
	}
	d := Deployment{Table: f.Context.Table}
	primaries := 0
	for _, s := range f.Context.Sites {
		st := s.Settings
		site := Site{Name: s.Name, Region: s.Region, Primary: s.Primary, Settings: Settings{
			BatchSize: st.BatchSize, BatchingWindow: time.Duration(st.BatchingWindow), MaxConcurrency: st.MaxConcurrency,
			FunctionTimeout: time.Duration(st.FunctionTimeout), VisibilityTimeout: time.Duration(st.VisibilityTimeout),
			MaxReceiveCount: st.MaxReceiveCount, TombstoneGrace: time.Duration(st.TombstoneGrace),
			RetryBase: time.Duration(st.RetryBase), RetryMax: time.Duration(st.RetryMax), QueryMaxAge: time.Duration(st.QueryMaxAge),
		}}
		if _, err := For(site, d.Table); err != nil {
			return Deployment{}, fmt.Errorf("%s: %w", path, err)
		}
		if s.Primary {
			primaries++
		}
		d.Sites = append(d.Sites, site)
	}
	switch {
	case len(d.Sites) == 0:
		return Deployment{}, fmt.Errorf("%s: context has no \"sites\" list", path)
	case primaries != 1:
		return Deployment{}, fmt.Errorf("%s: %d primary sites, want exactly one", path, primaries)
	}
	return d, nil
}

// duration is a time.Duration written in JSON as a Go duration string such as "90s".
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New("want a duration string such as \"90s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}
