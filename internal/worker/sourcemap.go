package worker

import (
	"encoding/base64"
	"regexp"
	"strconv"
	"strings"

	"github.com/go-sourcemap/sourcemap"
)

// scriptName is the module name the bundled script is evaluated under; it
// is what stack traces name.
const scriptName = "worker.js"

// stackMapper rewrites stack trace positions in the bundle to positions in
// the project's own files, using the bundle's source map.
type stackMapper struct {
	sm *sourcemap.Consumer
}

var inlineMap = regexp.MustCompile(`//# sourceMappingURL=data:application/json;(?:charset=[\w-]+;)?base64,([A-Za-z0-9+/=]+)\s*$`)

// newStackMapper uses sourceMap, or else the map inlined in script; it
// returns nil (no mapping) when there is neither or it does not parse.
func newStackMapper(script, sourceMap string) *stackMapper {
	if sourceMap == "" {
		m := inlineMap.FindStringSubmatch(script)
		if m == nil {
			return nil
		}
		b, err := base64.StdEncoding.DecodeString(m[1])
		if err != nil {
			return nil
		}
		sourceMap = string(b)
	}
	sm, err := sourcemap.Parse(scriptName, []byte(sourceMap))
	if err != nil {
		return nil
	}
	return &stackMapper{sm: sm}
}

var bundlePos = regexp.MustCompile(regexp.QuoteMeta(scriptName) + `:(\d+)(?::(\d+))?`)

// mapText replaces every "worker.js:line:column" in s with the original
// "file.ts:line:column". QuickJS columns are 1-based, as are the output's.
func (m *stackMapper) mapText(s string) string {
	if m == nil || !strings.Contains(s, scriptName+":") {
		return s
	}
	return bundlePos.ReplaceAllStringFunc(s, func(pos string) string {
		sub := bundlePos.FindStringSubmatch(pos)
		line, _ := strconv.Atoi(sub[1])
		col := 1
		if sub[2] != "" {
			col, _ = strconv.Atoi(sub[2])
		}
		src, _, l, c, ok := m.sm.Source(line, col-1)
		if !ok || src == "" {
			return pos
		}
		return src + ":" + strconv.Itoa(l) + ":" + strconv.Itoa(c+1)
	})
}
