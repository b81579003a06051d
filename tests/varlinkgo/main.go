// A third-party varlink client for vitaled, built by tests/integration/
// test_varlink_go.py from Debian's golang-github-varlink-go-dev (0.4.0): its
// interface generator makes package iovitaledterminal from
// docs/io.vitaled.Terminal.varlink (the interface line in lower case, the
// alias the daemon serves for that library's older grammar), and this
// program, compiled against the generated code, talks to a live daemon.
//
//	vitaled-go-check check SOCKET IDLFILE    typed calls, a stream, every standard error
//	vitaled-go-check denied SOCKET           a control method without control access
//	vitaled-go-check validate IDLFILE        stdin: JSON lines {"method": M, "reply": P} or
//	                                         {"event": E}; each checked strictly against
//	                                         the interface as the library parsed it
//
// Exit 0 when every check holds; otherwise one line per failure and exit 1.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io/ioutil"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/varlink/go/varlink"
	"github.com/varlink/go/varlink/idl"

	"vitaledcheck/iovitaledterminal"
)

var failures int

func fail(format string, a ...interface{}) {
	failures++
	fmt.Printf("FAIL: "+format+"\n", a...)
}

func ok(format string, a ...interface{}) {
	fmt.Printf("ok: "+format+"\n", a...)
}

// ---------------------------------------------------------------- validation

type schema struct {
	iface   *idl.IDL
	aliases map[string]*idl.Type
	methods map[string]*idl.Method
	event   *idl.Type
}

func loadSchema(path string) *schema {
	text, err := ioutil.ReadFile(path)
	if err != nil {
		fmt.Println("FAIL:", err)
		os.Exit(1)
	}
	iface, err := idl.New(string(text))
	if err != nil {
		fmt.Printf("FAIL: %s does not parse: %v\n", path, err)
		os.Exit(1)
	}
	s := &schema{iface: iface, aliases: map[string]*idl.Type{}, methods: map[string]*idl.Method{}}
	for _, a := range iface.Aliases {
		s.aliases[a.Name] = a.Type
	}
	for _, m := range iface.Methods {
		s.methods[m.Name] = m
	}
	s.event = s.aliases["Event"]
	return s
}

// check v (decoded with UseNumber) against t; problems go to out.
func (s *schema) check(v interface{}, t *idl.Type, path string, out *[]string) {
	if t.Kind == idl.TypeMaybe {
		if v == nil {
			return
		}
		s.check(v, t.ElementType, path, out)
		return
	}
	if v == nil {
		*out = append(*out, path+": null for a type that is not optional")
		return
	}
	switch t.Kind {
	case idl.TypeBool:
		if _, ok := v.(bool); !ok {
			*out = append(*out, path+": not a bool")
		}
	case idl.TypeInt:
		n, ok := v.(json.Number)
		if !ok {
			*out = append(*out, path+": not a number")
		} else if _, err := n.Int64(); err != nil {
			*out = append(*out, path+": not an int: "+n.String())
		}
	case idl.TypeFloat:
		if _, ok := v.(json.Number); !ok {
			*out = append(*out, path+": not a number")
		}
	case idl.TypeString, idl.TypeEnum:
		if _, ok := v.(string); !ok {
			*out = append(*out, path+": not a string")
		}
	case idl.TypeObject:
		if _, ok := v.(map[string]interface{}); !ok {
			*out = append(*out, path+": not an object")
		}
	case idl.TypeArray:
		a, ok := v.([]interface{})
		if !ok {
			*out = append(*out, path+": not an array")
			return
		}
		for i, e := range a {
			s.check(e, t.ElementType, fmt.Sprintf("%s[%d]", path, i), out)
		}
	case idl.TypeMap:
		m, ok := v.(map[string]interface{})
		if !ok {
			*out = append(*out, path+": not an object (map)")
			return
		}
		for k, e := range m {
			s.check(e, t.ElementType, path+"."+k, out)
		}
	case idl.TypeAlias:
		at, found := s.aliases[t.Alias]
		if !found {
			*out = append(*out, path+": unknown type "+t.Alias)
			return
		}
		s.check(v, at, path, out)
	case idl.TypeStruct:
		m, ok := v.(map[string]interface{})
		if !ok {
			*out = append(*out, path+": not an object")
			return
		}
		declared := map[string]bool{}
		for _, f := range t.Fields {
			declared[f.Name] = true
			e, present := m[f.Name]
			if !present {
				if f.Type.Kind != idl.TypeMaybe {
					*out = append(*out, path+"."+f.Name+": declared, not optional, not sent")
				}
				continue
			}
			s.check(e, f.Type, path+"."+f.Name, out)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if !declared[k] {
				*out = append(*out, path+"."+k+": sent but not declared")
			}
		}
	}
}

func decode(b []byte) (interface{}, error) {
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	var v interface{}
	err := d.Decode(&v)
	return v, err
}

func validate(idlPath string) {
	s := loadSchema(idlPath)
	if s.event == nil {
		fail("the interface declares no type Event")
	}
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 16<<20)
	n := 0
	seen := map[string]int{}
	for in.Scan() {
		line := in.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var rec struct {
			Method string          `json:"method"`
			Reply  json.RawMessage `json:"reply"`
			Event  json.RawMessage `json:"event"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			fail("input line %d: %v", n+1, err)
			continue
		}
		n++
		var problems []string
		what := ""
		if rec.Event != nil {
			v, err := decode(rec.Event)
			if err != nil {
				fail("event: %v", err)
				continue
			}
			typ := "?"
			if m, ok := v.(map[string]interface{}); ok {
				if t, ok := m["type"].(string); ok {
					typ = t
				}
			}
			what = "event " + typ
			s.check(v, s.event, "event", &problems)
		} else {
			name := rec.Method[strings.LastIndex(rec.Method, ".")+1:]
			m, found := s.methods[name]
			if !found {
				fail("%s: no such method in the interface", rec.Method)
				continue
			}
			v, err := decode(rec.Reply)
			if err != nil {
				fail("%s: %v", rec.Method, err)
				continue
			}
			what = "reply of " + name
			s.check(v, m.Out, name, &problems)
		}
		seen[what]++
		for _, p := range problems {
			fail("%s: %s", what, p)
		}
	}
	kinds := make([]string, 0, len(seen))
	for k, c := range seen {
		kinds = append(kinds, fmt.Sprintf("%s x%d", k, c))
	}
	sort.Strings(kinds)
	ok("validated %d messages against the interface: %s", n, strings.Join(kinds, ", "))
}

// ---------------------------------------------------------------- live checks

func expectError(what string, err error, name string) {
	if err == nil {
		fail("%s: no error, expected %s", what, name)
		return
	}
	got := ""
	switch e := err.(type) {
	case *varlink.InterfaceNotFound:
		got = "org.varlink.service.InterfaceNotFound"
	case *varlink.MethodNotFound:
		got = "org.varlink.service.MethodNotFound"
	case *varlink.MethodNotImplemented:
		got = "org.varlink.service.MethodNotImplemented"
	case *varlink.InvalidParameter:
		got = "org.varlink.service.InvalidParameter"
	case *varlink.Error:
		got = e.Name
	default:
		got = fmt.Sprintf("%T %v", err, err)
	}
	if got != name {
		fail("%s: got %s, expected %s", what, got, name)
	} else {
		ok("%s: %s", what, name)
	}
}

func connect(ctx context.Context, sock string) *varlink.Connection {
	c, err := varlink.NewConnection(ctx, "unix:"+sock)
	if err != nil {
		fmt.Println("FAIL: connect:", err)
		os.Exit(1)
	}
	return c
}

func live(sock, idlPath string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := connect(ctx, sock)
	defer c.Close()
	want, _ := ioutil.ReadFile(idlPath)

	var vendor, product, version, url string
	var ifaces []string
	if err := c.GetInfo(ctx, &vendor, &product, &version, &url, &ifaces); err != nil {
		fail("GetInfo: %v", err)
	} else {
		all := strings.Join(ifaces, " ")
		if !strings.Contains(" "+all+" ", " io.vitaled.terminal ") ||
			!strings.Contains(" "+all+" ", " io.vitaled.Terminal ") {
			fail("GetInfo: interfaces %v lack io.vitaled.Terminal or its alias", ifaces)
		} else {
			ok("GetInfo: %s %s, interfaces %s", product, version, all)
		}
	}
	desc, err := c.GetInterfaceDescription(ctx, "io.vitaled.terminal")
	if err != nil {
		fail("GetInterfaceDescription: %v", err)
	} else if _, perr := idl.New(desc); perr != nil {
		fail("the served description does not parse: %v", perr)
	} else if desc != string(want) {
		fail("the served description differs from the file the client was generated from")
	} else {
		ok("GetInterfaceDescription(io.vitaled.terminal): parses, %d bytes, same as the file", len(desc))
	}

	// typed calls through the generated client; GetStatus's outputs by
	// reflection, so that fields added to the interface later need no
	// change here (the first is version, the last the error)
	res := reflect.ValueOf(iovitaledterminal.GetStatus().Call).Call(
		[]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(c)})
	if e := res[len(res)-1].Interface(); e != nil {
		fail("GetStatus: %v", e)
	} else if ver := res[0].String(); ver == "" {
		fail("GetStatus: no version")
	} else {
		ok("GetStatus through the generated client: version %s, %d outputs", ver, len(res)-1)
	}
	recv, err := iovitaledterminal.WatchEvents().Send(ctx, c, varlink.More)
	if err != nil {
		fail("WatchEvents: %v", err)
	} else {
		ev, flags, err := recv(ctx)
		if err != nil || ev.Type != "Watching" || flags&varlink.Continues == 0 {
			fail("WatchEvents: %v, first event %q, continues %v", err, ev.Type,
				flags&varlink.Continues != 0)
		} else {
			ok("WatchEvents with more: first event %s (seq %d), continues", ev.Type, ev.Seq)
		}
	}
	// the stream holds that connection: the errors on a fresh one
	c2 := connect(ctx, sock)
	defer c2.Close()
	_, err = iovitaledterminal.GetCard().Call(ctx, c2, nil)
	if e, isNoCard := err.(*iovitaledterminal.NoCard); isNoCard {
		ok("GetCard with no card: the generated *NoCard (reader %v)", e.Reader)
	} else {
		fail("GetCard with no card: %T %v, expected *iovitaledterminal.NoCard", err, err)
	}
	var out json.RawMessage
	expectError("a call to an unknown interface",
		c2.Call(ctx, "io.example.nothing.Do", nil, &out), "org.varlink.service.InterfaceNotFound")
	expectError("an unknown method",
		c2.Call(ctx, "io.vitaled.terminal.NoSuchMethod", nil, &out), "org.varlink.service.MethodNotFound")
	expectError("GetStatus with a parameter it does not have",
		c2.Call(ctx, "io.vitaled.terminal.GetStatus", map[string]int{"bogus": 1}, &out),
		"org.varlink.service.InvalidParameter")
	expectError("GetInterfaceDescription of an unknown interface",
		func() error { _, e := c2.GetInterfaceDescription(ctx, "io.example.nothing"); return e }(),
		"org.varlink.service.InterfaceNotFound")
	r2, err := c2.Send(ctx, "io.vitaled.terminal.WatchEvents", nil, 0)
	if err == nil {
		_, err = r2(ctx, &out)
	}
	expectError("WatchEvents without more", err, "org.varlink.service.ExpectedMore")
	r3, err := c2.Send(ctx, "io.vitaled.terminal.GetStatus", nil, varlink.Upgrade)
	if err == nil {
		_, err = r3(ctx, &out)
	}
	expectError("GetStatus with upgrade", err, "org.varlink.service.MethodNotImplemented")
	// oneway: no reply, the next call's reply comes next
	if _, err := c2.Send(ctx, "io.vitaled.terminal.NoSuchMethod", nil, varlink.Oneway); err != nil {
		fail("oneway send: %v", err)
	}
	if err := c2.Call(ctx, "io.vitaled.terminal.ListReaders", nil, &out); err != nil {
		fail("the call after a failing oneway call: %v", err)
	} else {
		ok("a oneway call (to an unknown method) got no reply; the next call was answered")
	}
}

func denied(sock string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := connect(ctx, sock)
	defer c.Close()
	res := reflect.ValueOf(iovitaledterminal.Reload().Call).Call(
		[]reflect.Value{reflect.ValueOf(ctx), reflect.ValueOf(c)})
	err, _ := res[len(res)-1].Interface().(error)
	expectError("Reload without control access", err, "org.varlink.service.PermissionDenied")
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: vitaled-go-check check SOCKET IDL | denied SOCKET | validate IDL")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "check":
		live(os.Args[2], os.Args[3])
	case "denied":
		denied(os.Args[2])
	case "validate":
		validate(os.Args[2])
	default:
		os.Exit(2)
	}
	if failures > 0 {
		fmt.Printf("%d failures\n", failures)
		os.Exit(1)
	}
}
