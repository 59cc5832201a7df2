# One test per deny rule of fencing.rego, named after its reason code
# (test_deny_<code>), plus the allowed paths. Run:
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

ops := {"admin": "ops"}

# The one helper every test uses: the decision for input `req` over the fixture,
# with the clusters replaced by `clusters`.
_decide_over(clusters, req) := d if {
	d := fencing.decision with data.clusters as clusters
		with data.domains as fixture.domains
		with data.admins as fixture.admins
		with input as req
}

_decide(req) := _decide_over(fixture.clusters, req)

_ask(requester, action, target) := _decide({"requester": requester, "action": action, "target": target})

_list(requester, action) := _decide({"requester": requester, "action": action})

_denied_with(d, code) if {
	d.allow == false
	some r in d.reasons
	r.code == code
}

# --- allowed paths ----------------------------------------------------------
test_allow_member_fences_peer_in_own_cluster if {
	d := _ask(blue1, "off", "blue-2")
	d.allow == true
	d.reasons == []
}

test_allow_member_resets_and_starts_peer if {
	_ask(blue1, "reset", "blue-3").allow == true
	_ask(blue1, "on", "blue-2").allow == true
}

test_allow_member_reads_own_status if {
	_ask(blue1, "status", "blue-1").allow == true
}

test_allow_member_lists_only_own_domains if {
	d := _list(blue1, "list")
	d.allow == true
	d.domains == ["blue-1", "blue-2", "blue-3"]
	_list(red_a, "gethosts").domains == ["red-vm-a", "red-vm-b"]
}

test_allow_admin_lists_everything if {
	d := _list(ops, "list")
	d.allow == true
	d.domains == ["blue-1", "blue-2", "blue-3", "red-vm-a", "red-vm-b"]
	_ask(ops, "status", "red-vm-b").allow == true
}

test_allow_self_off_where_cluster_allows if {
	_ask(red_a, "off", "red-vm-a").allow == true
}

test_allow_fence_race_loser_may_still_read if {
	_decide({"requester": blue1, "action": "status", "target": "blue-1", "requester_fenced": true}).allow == true
	every action in ["list", "gethosts"] {
		_decide({"requester": blue1, "action": action, "requester_fenced": true}).allow == true
	}
}

test_denied_decision_has_no_domains if {
	d := _list({"cluster": "green", "node": "g1"}, "list")
	d.allow == false
	not d.domains
}

test_reasons_are_code_and_detail if {
	d := _ask(blue1, "off", "red-vm-a")
	d.reasons == [{"code": "target_not_owned", "detail": "domain red-vm-a belongs to another cluster, not blue"}]
}

# --- deny rules, one test each, named after the reason code ------------------
test_deny_unknown_cluster if {
	_denied_with(_ask({"cluster": "green", "node": "blue-1"}, "off", "blue-2"), "unknown_cluster")
	_denied_with(_ask({}, "status", "blue-2"), "unknown_cluster")
}

test_deny_not_a_member if {
	_denied_with(_ask({"cluster": "blue", "node": "red-a"}, "off", "blue-2"), "not_a_member")
}

test_deny_unknown_admin if {
	_denied_with(_list({"admin": "intruder"}, "list"), "unknown_admin")
}

test_deny_unknown_action if {
	_denied_with(_ask(blue1, "destroy", "blue-2"), "unknown_action")
	_denied_with(_decide({"requester": blue1, "target": "blue-2"}), "unknown_action")
}

test_deny_action_not_enabled if {
	_denied_with(_ask(red_a, "reset", "red-vm-b"), "action_not_enabled")
}

test_deny_target_missing if {
	_denied_with(_list(blue1, "off"), "target_missing")
}

test_deny_target_unexpected if {
	_denied_with(_ask(blue1, "list", "blue-2"), "target_unexpected")
}

test_deny_target_unknown if {
	_denied_with(_ask(blue1, "off", "nobody-owns-me"), "target_unknown")
}

test_deny_target_not_owned if {
	_denied_with(_ask(blue1, "off", "red-vm-a"), "target_not_owned")
	_denied_with(_ask(red_a, "status", "blue-1"), "target_not_owned")
}

test_deny_self_fence if {
	_denied_with(_ask(blue1, "reset", "blue-1"), "self_fence")
	_denied_with(_ask(blue1, "on", "blue-1"), "self_fence")
}

test_deny_self_off if {
	_denied_with(_ask(blue1, "off", "blue-1"), "self_off")
}

test_deny_admin_read_only if {
	_denied_with(_ask(ops, "off", "blue-2"), "admin_read_only")
}

test_deny_fence_race_lost if {
	lost := {"requester": blue1, "action": "off", "target": "blue-2", "requester_fenced": true}
	_denied_with(_decide(lost), "fence_race_lost")
	_ask(blue1, "off", "blue-2").allow == true
}

test_deny_fence_storm_limit if {
	limits := {"limits": {"fences_per_window": 2, "window": 60}}
	limited := object.union(fixture.clusters, {"blue": object.union(fixture.clusters.blue, limits)})
	over := {"requester": blue1, "action": "reset", "target": "blue-2", "recent_fences": 2}
	_denied_with(_decide_over(limited, over), "fence_storm_limit")
	_decide_over(limited, object.union(over, {"action": "off", "recent_fences": 1})).allow == true

	# Reads and power on are never storm-limited; without limits, no count matters.
	_decide_over(limited, object.union(over, {"action": "on", "recent_fences": 9})).allow == true
	_decide(object.union(over, {"action": "off", "recent_fences": 99})).allow == true
}

test_deny_not_permitted if {
	# Safety net: were a future edit to leave a request neither permitted nor
	# explained, the decision still denies and says so.
	d := _ask(blue1, "status", "blue-2") with data.fencing._permitted as false
	d.allow == false
	d.reasons == [{"code": "not_permitted", "detail": "no rule allows this request"}]
}

test_deny_by_default_without_data if {
	d := _decide_over({}, {"requester": blue1, "action": "status", "target": "blue-1"})
	d.allow == false
	count(d.reasons) > 0
}
