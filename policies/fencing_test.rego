# One test per rule of fencing.rego, plus the allowed paths. Run:
#   opa test policies/ --coverage      (npm run test:rego checks 100% coverage)
package fencing_test

import data.fencing

# Two tenants on one host; red allows self-off and only status/off.
fixture := {
	"clusters": {
		"blue": {
			"nodes": {"blue-1": {"domain": "blue-1"}, "blue-2": {"domain": "blue-2"}},
			"actions": {"status": true, "on": true, "off": true, "reset": true},
			"allow_self_off": false,
			"domains": ["blue-1", "blue-2", "blue-3"],
		},
		"red": {
			"nodes": {"red-a": {"domain": "red-vm-a"}},
			"actions": {"status": true, "off": true},
			"allow_self_off": true,
			"domains": ["red-vm-a", "red-vm-b"],
		},
	},
	"domains": {
		"blue-1": {"cluster": "blue"}, "blue-2": {"cluster": "blue"}, "blue-3": {"cluster": "blue"},
		"red-vm-a": {"cluster": "red"}, "red-vm-b": {"cluster": "red"},
	},
	"admins": {"ops": {}},
}

blue1 := {"cluster": "blue", "node": "blue-1"}

red_a := {"cluster": "red", "node": "red-a"}

decide(requester, action, target) := d if {
	d := fencing.decision with data.clusters as fixture.clusters
		with data.domains as fixture.domains
		with data.admins as fixture.admins
		with input as {"requester": requester, "action": action, "target": target}
}

decide_list(requester, action) := d if {
	d := fencing.decision with data.clusters as fixture.clusters
		with data.domains as fixture.domains
		with data.admins as fixture.admins
		with input as {"requester": requester, "action": action}
}

denied_with(d, code) if {
	d.allow == false
	some r in d.reasons
	startswith(r, concat("", [code, ":"]))
}

# --- allowed paths ----------------------------------------------------------
test_member_fences_peer_in_own_cluster if {
	d := decide(blue1, "off", "blue-2")
	d.allow == true
	d.reasons == []
}

test_member_resets_and_starts_peer if {
	decide(blue1, "reset", "blue-3").allow == true
	decide(blue1, "on", "blue-2").allow == true
}

test_member_reads_own_status if {
	decide(blue1, "status", "blue-1").allow == true
}

test_member_lists_only_own_domains if {
	d := decide_list(blue1, "list")
	d.allow == true
	d.domains == ["blue-1", "blue-2", "blue-3"]
	decide_list(red_a, "gethosts").domains == ["red-vm-a", "red-vm-b"]
}

test_admin_lists_everything if {
	d := decide_list({"admin": "ops"}, "list")
	d.allow == true
	d.domains == ["blue-1", "blue-2", "blue-3", "red-vm-a", "red-vm-b"]
	decide({"admin": "ops"}, "status", "red-vm-b").allow == true
}

test_denied_decision_has_no_domains if {
	d := decide_list({"cluster": "green", "node": "g1"}, "list")
	d.allow == false
	not d.domains
}

# --- Rule 1 -----------------------------------------------------------------
test_rule1_unknown_cluster if {
	denied_with(decide({"cluster": "green", "node": "blue-1"}, "off", "blue-2"), "unknown_cluster")
}

test_rule1_not_a_member if {
	denied_with(decide({"cluster": "blue", "node": "red-a"}, "off", "blue-2"), "not_a_member")
}

test_rule1_empty_requester if {
	denied_with(decide({}, "status", "blue-2"), "unknown_cluster")
}

# --- Rule 2 -----------------------------------------------------------------
test_rule2_unknown_admin if {
	denied_with(decide_list({"admin": "intruder"}, "list"), "unknown_admin")
}

# --- Rule 3 -----------------------------------------------------------------
test_rule3_unknown_action if {
	denied_with(decide(blue1, "destroy", "blue-2"), "unknown_action")
}

test_rule3_missing_action if {
	d := fencing.decision with data.clusters as fixture.clusters
		with data.domains as fixture.domains
		with input as {"requester": blue1, "target": "blue-2"}
	denied_with(d, "unknown_action")
}

# --- Rule 4 -----------------------------------------------------------------
test_rule4_action_not_enabled if {
	denied_with(decide(red_a, "reset", "red-vm-b"), "action_not_enabled")
}

# --- Rule 5 -----------------------------------------------------------------
test_rule5_target_missing if {
	denied_with(decide_list(blue1, "off"), "target_missing")
}

test_rule5_target_unexpected if {
	denied_with(decide(blue1, "list", "blue-2"), "target_unexpected")
}

# --- Rule 6 -----------------------------------------------------------------
test_rule6_target_unknown if {
	denied_with(decide(blue1, "off", "nobody-owns-me"), "target_unknown")
}

test_rule6_target_not_owned if {
	denied_with(decide(blue1, "off", "red-vm-a"), "target_not_owned")
	denied_with(decide(red_a, "status", "blue-1"), "target_not_owned")
}

# --- Rule 7 -----------------------------------------------------------------
test_rule7_no_self_on_or_reset if {
	denied_with(decide(blue1, "reset", "blue-1"), "self_fence")
	denied_with(decide(blue1, "on", "blue-1"), "self_fence")
}

# --- Rule 8 -----------------------------------------------------------------
test_rule8_self_off_denied_by_default if {
	denied_with(decide(blue1, "off", "blue-1"), "self_off")
}

test_rule8_self_off_where_cluster_allows if {
	decide(red_a, "off", "red-vm-a").allow == true
}

# --- Rule 9 -----------------------------------------------------------------
test_rule9_admin_read_only if {
	denied_with(decide({"admin": "ops"}, "off", "blue-2"), "admin_read_only")
}

# --- Rule 10 ----------------------------------------------------------------
test_rule10_fence_race_lost if {
	d := fencing.decision with data.clusters as fixture.clusters
		with data.domains as fixture.domains
		with input as {"requester": blue1, "action": "off", "target": "blue-2", "requester_fenced": true}
	denied_with(d, "fence_race_lost")
	decide(blue1, "off", "blue-2").allow == true
}

test_rule10_fence_race_loser_may_still_read if {
	status := fencing.decision with data.clusters as fixture.clusters
		with data.domains as fixture.domains
		with input as {"requester": blue1, "action": "status", "target": "blue-1", "requester_fenced": true}
	status.allow == true
	every action in ["list", "gethosts"] {
		d := fencing.decision with data.clusters as fixture.clusters
			with data.domains as fixture.domains
			with input as {"requester": blue1, "action": action, "requester_fenced": true}
		d.allow == true
	}
}

# --- Rule 11 ----------------------------------------------------------------
test_rule11_fence_storm_limit if {
	limited := object.union(fixture.clusters, {"blue": object.union(fixture.clusters.blue, {"limits": {"fences_per_window": 2, "window": 60}})})
	over := fencing.decision with data.clusters as limited
		with data.domains as fixture.domains
		with input as {"requester": blue1, "action": "reset", "target": "blue-2", "recent_fences": 2}
	denied_with(over, "fence_storm_limit")
	under := fencing.decision with data.clusters as limited
		with data.domains as fixture.domains
		with input as {"requester": blue1, "action": "off", "target": "blue-2", "recent_fences": 1}
	under.allow == true

	# Reads and power on are never storm-limited; without limits, no count matters.
	on := fencing.decision with data.clusters as limited
		with data.domains as fixture.domains
		with input as {"requester": blue1, "action": "on", "target": "blue-2", "recent_fences": 9}
	on.allow == true
	unlimited := fencing.decision with data.clusters as fixture.clusters
		with data.domains as fixture.domains
		with input as {"requester": blue1, "action": "off", "target": "blue-2", "recent_fences": 99}
	unlimited.allow == true
}

# --- Default deny -------------------------------------------------------------
test_default_deny_without_data if {
	d := fencing.decision with data.clusters as {}
		with data.domains as {}
		with input as {"requester": blue1, "action": "status", "target": "blue-1"}
	d.allow == false
	count(d.reasons) > 0
}

test_catch_all_reason_when_nothing_permits if {
	# Safety net: were a future edit to leave a request neither permitted nor
	# explained, the decision still denies and says so.
	d := fencing.decision with data.clusters as fixture.clusters
		with data.domains as fixture.domains
		with data.fencing.permitted as false
		with input as {"requester": blue1, "action": "status", "target": "blue-2"}
	d.allow == false
	d.reasons == ["not_permitted: no rule allows this request"]
}
