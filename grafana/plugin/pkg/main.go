// Command gpx_edgeloop is the backend of edgeloop's Grafana data source
// (docs/grafana-plugin.md). Grafana starts it and speaks to it over gRPC (go-plugin's
// handshake); it is not meant to be run by hand.
package main

import (
	"log/slog"
	"os"

	"github.com/grafana/grafana-plugin-sdk-go/backend/datasource"
	"github.com/grafana/grafana-plugin-sdk-go/backend/log"

	"github.com/edgeloop/edgeloop/grafana/plugin/pkg/plugin"
)

func main() {
	logger := slog.New(plugin.NewSDKHandler(log.DefaultLogger))
	if err := datasource.Manage(plugin.ID, plugin.NewFactory(logger), datasource.ManageOpts{}); err != nil {
		logger.Error("the plugin stopped", "err", err)
		os.Exit(1)
	}
}
