package dockerengine

import (
	"testing"

	"github.com/docker/docker/api/types/swarm"

	"github.com/slipwayhq/slipway/engine"
)

// TestSwarmSlotIdentity: the slots of one version's service keep a role and release each (a
// load test's extra slots beside the stable ones), and a slot without labels of its own (a
// service made before slots had them) has the service's.
func TestSwarmSlotIdentity(t *testing.T) {
	l := map[string]string{
		engine.LabelEnvironment: "e", engine.LabelCluster: "s", engine.LabelService: "web", engine.LabelVersion: "1.0.0",
		engine.LabelRole: string(engine.RoleStable), engine.LabelRelease: "r1",
	}
	setSlots(l, labelSwarmUp, []int{0, 1, 2})
	setSlots(l, labelSwarmKnown, []int{0, 1, 2})
	setSlotIdentity(l, 1, engine.RoleStable, "r1")
	setSlotIdentity(l, 2, "loadtest", "lt-1")
	svc := swarm.Service{Spec: swarm.ServiceSpec{Annotations: swarm.Annotations{Labels: l}}}
	want := map[int][2]string{0: {"stable", "r1"}, 1: {"stable", "r1"}, 2: {"loadtest", "lt-1"}}
	got := replicas(svc, nil)
	if len(got) != 3 {
		t.Fatalf("replicas %+v", got)
	}
	for _, c := range got {
		if w := want[c.Slot]; string(c.Role) != w[0] || c.Release != w[1] {
			t.Errorf("slot %d: role %q release %q, want %v", c.Slot, c.Role, c.Release, w)
		}
	}
	forgetSlotIdentity(l, 2)
	if _, ok := l[labelSwarmSlotRole+"2"]; ok {
		t.Errorf("slot 2's role kept after it was forgotten: %v", l)
	}
	if r, rel := slotIdentity(l, 2); r != engine.RoleStable || rel != "r1" {
		t.Errorf("a slot without labels of its own: %q %q, want the service's", r, rel)
	}
}
