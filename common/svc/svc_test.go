package svc

import (
	"context"
	"errors"
	"os/user"
	"testing"
	"time"
)

func TestProgramStartStop(t *testing.T) {
	started := make(chan struct{})
	p := NewProgram(func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		return nil
	}, time.Second)
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := p.Stop(nil); err != nil {
		t.Errorf("Stop = %v, want nil", err)
	}
	if err := p.Wait(); err != nil {
		t.Errorf("Wait = %v, want nil", err)
	}
}

func TestProgramStopTimeout(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	p := NewProgram(func(ctx context.Context) error { <-block; return nil }, 50*time.Millisecond)
	p.Start(nil)
	if err := p.Stop(nil); err == nil {
		t.Error("Stop of a Run that ignores its context = nil, want a timeout error")
	}
}

func TestControlUnknownAction(t *testing.T) {
	_, err := Control(Config{Name: "hostcert-test"}, "explode")
	if !errors.Is(err, ErrUnknownAction) {
		t.Errorf("Control(explode) = %v, want ErrUnknownAction", err)
	}
}

func TestCheckUnitUser(t *testing.T) {
	lookup := func(name string) (*user.User, error) {
		if name == "hostcert" {
			return &user.User{Username: name}, nil
		}
		return nil, user.UnknownUserError(name)
	}
	tests := []struct {
		unit    string
		wantErr bool
	}{
		{"[Service]\nUser=hostcert\n", false},
		{"[Service]\nUser=nobody-here\n", true},
		{"[Service]\n  User=nobody-here  \n", true},
		{"[Service]\nExecStart=/bin/true\n", false},
		{"", false},
		{"[Service]\nUser={{UserName}}\n", false},
	}
	for _, tt := range tests {
		err := checkUnitUser(tt.unit, lookup)
		if (err != nil) != tt.wantErr {
			t.Errorf("checkUnitUser(%q) = %v, want error %v", tt.unit, err, tt.wantErr)
		}
		if err != nil && !errors.Is(err, ErrNoServiceUser) {
			t.Errorf("checkUnitUser(%q) = %v, want ErrNoServiceUser", tt.unit, err)
		}
	}
}
