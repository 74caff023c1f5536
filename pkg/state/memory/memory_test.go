package memory

import (
	"testing"

	"github.com/tandem-run/tandem/pkg/state"
	"github.com/tandem-run/tandem/pkg/state/statetest"
)

func TestContract(t *testing.T) {
	statetest.Run(t, func(t *testing.T) state.Store { return New(0) })
}
