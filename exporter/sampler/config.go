package sampler

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"time"

	"github.com/edgeloop/edgeloop/exporter/observe"
	"github.com/edgeloop/edgeloop/internal/config"
)

// StrategyType names a sampling strategy: the value of a strategy's `type` key.
type StrategyType string

const (
	// Threshold captures a prediction whose confidence (by the strategy's scorer) is strictly
	// below `threshold`.
	Threshold StrategyType = "threshold"
	// CloseToThreshold captures a prediction whose confidence lies in the open interval
	// (threshold − epsilon, threshold + epsilon), as Roboflow Inference's strategy of that name.
	CloseToThreshold StrategyType = "close_to_threshold"
	// Margin captures a prediction whose top-1 minus top-2 probability is strictly below
	// `threshold`: Threshold with the margin scorer.
	Margin StrategyType = "margin"
	// Entropy captures a prediction whose entropy confidence 1 − H(p)/ln K is strictly below
	// `threshold`: Threshold with the entropy scorer.
	Entropy StrategyType = "entropy"
	// Random captures a fixed share (`probability`) of all predictions: the unbiased baseline.
	Random StrategyType = "random"
	// Classes captures predictions of the listed classes.
	Classes StrategyType = "classes"

	// classesBased is Roboflow's name for Classes, accepted as an alias.
	classesBased StrategyType = "classes_based"
	// detectionsNumberBased is Roboflow's detection-only strategy; naming it is a config error.
	detectionsNumberBased StrategyType = "detections_number_based"
)

// Limit types: the values of a limit's `type` key, as in Roboflow Inference.
const (
	// Minutely allows `value` captures a minute.
	Minutely = "minutely"
	// Hourly allows `value` captures an hour.
	Hourly = "hourly"
	// Daily allows `value` captures a day.
	Daily = "daily"
)

// Roboflow batching_strategy recreation intervals.
const (
	intervalNever   = "never"
	intervalDaily   = "daily"
	intervalWeekly  = "weekly"
	intervalMonthly = "monthly"
)

// Bounds of the settings.
const (
	// maxStrategies keeps the set of strategies that fired for one prediction in one uint64.
	maxStrategies = 64
	// maxNameLen and maxTagLen follow Roboflow's tag rule (1 to 64 characters).
	maxNameLen = 64
	// maxLimitValue is far above anything an uplink carries, and far from float overflow.
	maxLimitValue = 1_000_000_000
	// maxDistance: two unrelated 64-bit signatures differ in about 32 bits, so a larger
	// distance would call nearly every input a duplicate of every other.
	maxDistance = 32
	// maxDedupEntries bounds a model's signature ring (40 bytes an entry: 40 MB at most).
	maxDedupEntries = 1_000_000
)

var (
	// nameRE: strategy names are label values and log fields; keep them to plain ASCII.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)
	// tagRE is Roboflow's tag alphabet.
	tagRE = regexp.MustCompile(`^[A-Za-z0-9\-_:/.\[\]<>{}@]+$`)
)

// Config is the sampler's configuration: which predictions to capture as training samples,
// and how many. It is a superset of Roboflow Inference's `active_learning` configuration, so
// one of those loads unchanged (docs/sampler.md has the mapping).
type Config struct {
	// Enabled turns capture on. Default false: a node without a collector must not fill its
	// disk with samples nobody takes.
	Enabled bool `yaml:"enabled"`
	// Strategies are evaluated in order for every prediction; the first that matches, wins its
	// probability draw and has room in its own limits names the capture reason. Default: a
	// `random` strategy "random" at probability 0.001, then a `threshold` strategy
	// "low_confidence" at 0.6 (max_softmax).
	Strategies []StrategyConfig `yaml:"strategies"`
	// SamplingStrategies is Roboflow's name for Strategies. When it is given it replaces the
	// default strategies; giving both is an error.
	SamplingStrategies []StrategyConfig `yaml:"sampling_strategies"`
	// Limits cap all captures of the node together, whatever the model and strategy: token
	// buckets per minute, hour and day. Default minutely 60, hourly 1000, daily 10000.
	Limits []Limit `yaml:"limits"`
	// MaxBytesPerDay caps the bytes of the samples captured per UTC day, all models together:
	// uplinks are metered. 0 means no byte budget. Default 256 MiB.
	MaxBytesPerDay int64 `yaml:"max_bytes_per_day"`
	// Dedup suppresses captures of inputs already captured a moment ago.
	Dedup DedupConfig `yaml:"dedup"`
	// Tags are added to every capture's tags (Roboflow's global tags).
	Tags []string `yaml:"tags"`
	// Roboflow holds the Roboflow keys that have no edgeloop meaning of their own.
	Roboflow RoboflowConfig `yaml:",inline"`
}

// StrategyConfig is one sampling strategy.
type StrategyConfig struct {
	// Name is the capture reason recorded with the sample and the `strategy` label value:
	// 1 to 64 characters from A-Z a-z 0-9 _ . : -, unique among the strategies. Required.
	Name string `yaml:"name"`
	// Type is one of threshold, close_to_threshold, margin, entropy, random, classes (alias
	// classes_based). Required.
	Type StrategyType `yaml:"type"`
	// Scorer picks the confidence that threshold and close_to_threshold compare: max_softmax
	// (default), margin or entropy, as observe.Scores holds them.
	Scorer observe.Scorer `yaml:"scorer"`
	// Threshold is the confidence bound (threshold, margin, entropy: capture strictly below it)
	// or the centre of the band (close_to_threshold). Required by those types.
	Threshold *float64 `yaml:"threshold"`
	// Epsilon is the band's half-width for close_to_threshold, in (0, 1]. Required there.
	Epsilon float64 `yaml:"epsilon"`
	// Probability: a prediction that matches is captured with this probability, 0 to 1.
	// Default 1. For random it is the share of traffic, and required (or traffic_percentage).
	Probability *float64 `yaml:"probability"`
	// TrafficPercentage is Roboflow's name for a random strategy's share, 0 to 1.
	TrafficPercentage *float64 `yaml:"traffic_percentage"`
	// Classes restricts the strategy to predictions of these classes (matched against the
	// predicted class name, or against the class index when a model has no class names and
	// the entry is a number). Required by type classes; optional for the others.
	Classes []string `yaml:"classes"`
	// SelectedClassNames is Roboflow's name for Classes.
	SelectedClassNames []string `yaml:"selected_class_names"`
	// OnlyTopClasses is Roboflow's close_to_threshold flag. Only true (its default) is
	// supported: the sampler sees the scores of the predicted class, not of every class.
	OnlyTopClasses *bool `yaml:"only_top_classes"`
	// MinimumObjectsCloseToThreshold is Roboflow's detection-only setting; like Roboflow with
	// a classification model, the sampler ignores it (it must be at least 1 when given).
	MinimumObjectsCloseToThreshold *int `yaml:"minimum_objects_close_to_threshold"`
	// MoreThan and LessThan belong to Roboflow's detections_number_based strategy; they are
	// accepted only so that such a strategy reports that it does not apply to classification.
	MoreThan *int `yaml:"more_than"`
	// LessThan: see MoreThan.
	LessThan *int `yaml:"less_than"`
	// Limits cap this strategy's captures, per model: token buckets per minute, hour, day.
	Limits []Limit `yaml:"limits"`
	// Tags are recorded with this strategy's captures (Decision.Tags).
	Tags []string `yaml:"tags"`
}

// Limit is a token bucket that holds `value` captures and refills `value` per period
// (a minute, an hour or a day), as Roboflow's `{type: minutely, value: 10}`.
type Limit struct {
	// Type is minutely, hourly or daily.
	Type string `yaml:"type"`
	// Value is the number of captures per period, at least 1.
	Value int `yaml:"value"`
}

// DedupConfig configures duplicate suppression. Exact duplicates (identical input values)
// captured within Window are always suppressed; near duplicates only when Enabled and
// MaxDistance ≥ 0.
type DedupConfig struct {
	// Enabled turns near-duplicate suppression on. Default true.
	Enabled bool `yaml:"enabled"`
	// Window is how long a captured input suppresses its duplicates. Default 10m.
	Window time.Duration `yaml:"window"`
	// MaxDistance is the largest Hamming distance, in bits of the 64-bit signature, at which
	// an input is a near duplicate of a captured one: 0 to 32, or -1 for off. Default 4.
	MaxDistance int `yaml:"max_distance"`
	// MaxEntries bounds the signatures remembered per model; the oldest go first.
	// Default 4096.
	MaxEntries int `yaml:"max_entries"`
}

// RoboflowConfig holds the keys of Roboflow's active_learning configuration that edgeloop
// accepts so a ported file loads, but that have no meaning (or another form) here. They
// appear at the top level of Config.
type RoboflowConfig struct {
	// PersistPredictions is ignored: the prediction and its scores are always part of a
	// sample's metadata.
	PersistPredictions *bool `yaml:"persist_predictions"`
	// MaxImageSize ([height, width]) is ignored: samples are stored as the model's input
	// tensor, which already has the model's size.
	MaxImageSize []int `yaml:"max_image_size"`
	// JPEGCompressionLevel (1 to 100) is ignored: input tensors are stored losslessly as .npy.
	JPEGCompressionLevel int `yaml:"jpeg_compression_level"`
	// BatchingStrategy's max_batch_images becomes one more overall limit; see BatchingConfig.
	BatchingStrategy *BatchingConfig `yaml:"batching_strategy"`
}

// BatchingConfig is Roboflow's batching_strategy. Batches do not exist in edgeloop (the
// collector shards samples by model, version, day and hour), so only MaxBatchImages has an
// effect: with a daily, weekly or monthly RecreationInterval it caps all captures per that
// period like an overall limit.
type BatchingConfig struct {
	// BatchesNamePrefix is ignored: shards are named by the collector.
	BatchesNamePrefix string `yaml:"batches_name_prefix"`
	// RecreationInterval is never, daily, weekly or monthly.
	RecreationInterval string `yaml:"recreation_interval"`
	// MaxBatchImages caps the captures per RecreationInterval; 0 means no cap.
	MaxBatchImages int `yaml:"max_batch_images"`
}

// DefaultStrategies returns the default strategies: "random" (type random, probability 0.01)
// then "close_call" (type margin, threshold 0.1: the top two classes within 0.1 of each
// other). They follow the sampling benchmark (docs/benchmarks.md, "Sampling strategies against
// random"): under every drift measured, a random sample recovered as much accuracy per upload
// as any uncertainty strategy, and a max_softmax threshold (the earlier default, below 0.6)
// recovered significantly less under three of five drifts while filling the limits, since a
// drifted stream is mostly below 0.6. So random carries the budget, and the uncertainty
// strategy that lost least, margin, is kept narrow beside it for the cases worth a label. The
// random one comes first so that its draw sees every prediction: placed second it would never
// see the predictions the other took, and its samples would under-represent them, which is
// what an unbiased baseline must not do.
func DefaultStrategies() []StrategyConfig {
	return []StrategyConfig{
		{Name: "random", Type: Random, Probability: ptr(0.01)},
		{Name: "close_call", Type: Margin, Threshold: ptr(0.1)},
	}
}

// DefaultConfig returns the defaults: capture off; when turned on, DefaultStrategies, overall
// limits of 60 a minute, 1000 an hour and 10000 a day, 256 MiB a day, dedup on.
func DefaultConfig() Config {
	return Config{
		Enabled:    false,
		Strategies: DefaultStrategies(),
		Limits: []Limit{
			{Type: Minutely, Value: 60},
			{Type: Hourly, Value: 1000},
			{Type: Daily, Value: 10000},
		},
		MaxBytesPerDay: 256 << 20,
		Dedup:          DefaultDedupConfig(),
	}
}

// DefaultDedupConfig returns the dedup defaults: near duplicates on, window 10m, distance 4,
// 4096 entries.
func DefaultDedupConfig() DedupConfig {
	return DedupConfig{Enabled: true, Window: 10 * time.Minute, MaxDistance: 4, MaxEntries: 4096}
}

func ptr[T any](v T) *T { return &v }

// EffectiveStrategies returns the strategies in force: SamplingStrategies when given,
// Strategies otherwise.
func (c Config) EffectiveStrategies() []StrategyConfig {
	if len(c.SamplingStrategies) > 0 {
		return c.SamplingStrategies
	}
	return c.Strategies
}

// Validate reports every invalid field, named by its path relative to the sampler's section.
// The whole section is checked even when capture is off, so a mistake shows before it is
// turned on.
func (c Config) Validate() error {
	var errs []error
	listKey, list := "strategies", c.Strategies
	if len(c.SamplingStrategies) > 0 {
		// The defaults fill Strategies before the file is read, so only a Strategies that
		// differs from them was written by the user.
		if !reflect.DeepEqual(c.Strategies, DefaultStrategies()) && len(c.Strategies) > 0 {
			errs = append(errs, config.Errorf("sampling_strategies", "give strategies or sampling_strategies (Roboflow's name for it), not both"))
		}
		listKey, list = "sampling_strategies", c.SamplingStrategies
	}
	if c.Enabled && len(list) == 0 {
		errs = append(errs, config.Errorf(listKey, "must list at least one strategy when enabled"))
	}
	if len(list) > maxStrategies {
		errs = append(errs, config.Errorf(listKey, "must list at most %d strategies, got %d", maxStrategies, len(list)))
	}
	seen := make(map[string]int, len(list))
	for i, s := range list {
		path := fmt.Sprintf("%s[%d]", listKey, i)
		errs = append(errs, config.Nest(path, s.Validate()))
		if j, dup := seen[s.Name]; dup && s.Name != "" {
			errs = append(errs, config.Errorf(path+".name", "%q is already the name of %s[%d]: names must be unique", s.Name, listKey, j))
		} else {
			seen[s.Name] = i
		}
	}
	errs = append(errs, config.Nest("limits", validateLimits(c.Limits)))
	if c.MaxBytesPerDay < 0 {
		errs = append(errs, config.Errorf("max_bytes_per_day", "must not be negative (0 means no byte budget), got %d", c.MaxBytesPerDay))
	}
	errs = append(errs, config.Nest("dedup", c.Dedup.Validate()))
	errs = append(errs, config.Nest("tags", validateTags(c.Tags)))
	errs = append(errs, c.Roboflow.validate())
	return errors.Join(errs...)
}

// Validate reports every invalid field of one strategy, named relative to the strategy.
func (s StrategyConfig) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, config.Errorf(field, format, args...))
	}
	switch {
	case s.Name == "":
		add("name", "must be set: it is the capture reason and the strategy label")
	case len(s.Name) > maxNameLen || !nameRE.MatchString(s.Name):
		add("name", "must be 1 to %d characters from A-Z a-z 0-9 _ . : -, got %q", maxNameLen, s.Name)
	}
	typ := s.Type
	if typ == classesBased {
		typ = Classes
	}
	switch typ {
	case Threshold, CloseToThreshold, Margin, Entropy, Random, Classes:
	case detectionsNumberBased:
		add("type", "detections_number_based applies to detection models; edgeloop samples classification models (use threshold, close_to_threshold, margin, entropy, random or classes)")
	case "":
		add("type", "must be set: one of threshold, close_to_threshold, margin, entropy, random, classes")
	default:
		add("type", "must be one of threshold, close_to_threshold, margin, entropy, random, classes (or classes_based), got %q", string(s.Type))
	}

	switch typ {
	case Threshold, CloseToThreshold:
		switch s.Scorer {
		case "", observe.MaxSoftmax, observe.Margin, observe.Entropy:
		default:
			add("scorer", "must be one of max_softmax, margin, entropy, got %q", string(s.Scorer))
		}
	default:
		if s.Scorer != "" {
			add("scorer", "applies to types threshold and close_to_threshold only (type %s decides its own confidence)", string(s.Type))
		}
	}

	switch typ {
	case Threshold, Margin, Entropy:
		switch {
		case s.Threshold == nil:
			add("threshold", "must be set for type %s", string(s.Type))
		case !(*s.Threshold > 0 && *s.Threshold <= 1):
			add("threshold", "must be above 0 and at most 1 (confidences strictly below it are captured), got %g", *s.Threshold)
		}
	case CloseToThreshold:
		switch {
		case s.Threshold == nil:
			add("threshold", "must be set for type close_to_threshold")
		case !(*s.Threshold >= 0 && *s.Threshold <= 1):
			add("threshold", "must be between 0 and 1, got %g", *s.Threshold)
		}
	default:
		if s.Threshold != nil {
			add("threshold", "applies to types threshold, close_to_threshold, margin and entropy only")
		}
	}
	if typ == CloseToThreshold {
		if !(s.Epsilon > 0 && s.Epsilon <= 1) {
			add("epsilon", "must be above 0 and at most 1 for type close_to_threshold, got %g", s.Epsilon)
		}
	} else if s.Epsilon != 0 {
		add("epsilon", "applies to type close_to_threshold only")
	}

	switch {
	case s.Probability != nil && s.TrafficPercentage != nil:
		add("traffic_percentage", "give probability or traffic_percentage (Roboflow's name for a random strategy's probability), not both")
	case s.TrafficPercentage != nil && typ != Random:
		add("traffic_percentage", "applies to type random only (the others take probability)")
	case s.Probability == nil && s.TrafficPercentage == nil && typ == Random:
		// A default of 1 would capture every prediction: never what a baseline wants.
		add("probability", "must be set for type random: it is the share of predictions captured")
	}
	for _, p := range []struct {
		key string
		v   *float64
	}{{"probability", s.Probability}, {"traffic_percentage", s.TrafficPercentage}} {
		if p.v != nil && !(*p.v >= 0 && *p.v <= 1) {
			add(p.key, "must be between 0 and 1, got %g", *p.v)
		}
	}

	switch {
	case len(s.Classes) > 0 && len(s.SelectedClassNames) > 0:
		add("selected_class_names", "give classes or selected_class_names (Roboflow's name for it), not both")
	case typ == Classes && len(s.Classes) == 0 && len(s.SelectedClassNames) == 0:
		add("classes", "must list at least one class for type classes")
	}
	for _, key := range []struct {
		name string
		list []string
	}{{"classes", s.Classes}, {"selected_class_names", s.SelectedClassNames}} {
		for i, c := range key.list {
			if c == "" {
				add(key.name, "entry %d is empty", i)
			}
		}
	}

	if s.OnlyTopClasses != nil && !*s.OnlyTopClasses {
		add("only_top_classes", "only true is supported: the sampler sees the predicted class's scores, not every class's")
	}
	if s.OnlyTopClasses != nil && typ != CloseToThreshold {
		add("only_top_classes", "applies to type close_to_threshold only")
	}
	if m := s.MinimumObjectsCloseToThreshold; m != nil && *m < 1 {
		add("minimum_objects_close_to_threshold", "must be at least 1, got %d", *m)
	}
	if typ != detectionsNumberBased {
		if s.MoreThan != nil {
			add("more_than", "applies to Roboflow's detections_number_based strategy, which classification models have no use for")
		}
		if s.LessThan != nil {
			add("less_than", "applies to Roboflow's detections_number_based strategy, which classification models have no use for")
		}
	}
	errs = append(errs, config.Nest("limits", validateLimits(s.Limits)))
	errs = append(errs, config.Nest("tags", validateTags(s.Tags)))
	return errors.Join(errs...)
}

// validateLimits checks a limits list; fields are named relative to the list ("[0].value").
func validateLimits(limits []Limit) error {
	var errs []error
	seen := map[string]bool{}
	for i, l := range limits {
		switch l.Type {
		case Minutely, Hourly, Daily:
			if seen[l.Type] {
				errs = append(errs, config.Errorf(fmt.Sprintf("[%d].type", i), "%s is given twice", l.Type))
			}
			seen[l.Type] = true
		default:
			errs = append(errs, config.Errorf(fmt.Sprintf("[%d].type", i), "must be one of minutely, hourly, daily, got %q", l.Type))
		}
		if l.Value < 1 || l.Value > maxLimitValue {
			errs = append(errs, config.Errorf(fmt.Sprintf("[%d].value", i), "must be between 1 and %d, got %d", maxLimitValue, l.Value))
		}
	}
	return errors.Join(errs...)
}

// validateTags applies Roboflow's rule: 1 to 64 characters from A-Z a-z 0-9 - _ : / . [ ] < > { } @.
func validateTags(tags []string) error {
	var errs []error
	for i, t := range tags {
		if len(t) > maxNameLen || !tagRE.MatchString(t) {
			errs = append(errs, config.Errorf(fmt.Sprintf("[%d]", i), "must be 1 to 64 characters from A-Z a-z 0-9 - _ : / . [ ] < > { } @, got %q", t))
		}
	}
	return errors.Join(errs...)
}

// Validate checks the dedup settings, named relative to the dedup section.
func (d DedupConfig) Validate() error {
	var errs []error
	if d.Window <= 0 {
		errs = append(errs, config.Errorf("window", "must be positive (exact duplicates are always suppressed within it), got %s", d.Window))
	}
	if d.MaxDistance < -1 || d.MaxDistance > maxDistance {
		errs = append(errs, config.Errorf("max_distance", "must be between 0 and %d bits, or -1 for no near-duplicate suppression, got %d", maxDistance, d.MaxDistance))
	}
	if d.MaxEntries < 1 || d.MaxEntries > maxDedupEntries {
		errs = append(errs, config.Errorf("max_entries", "must be between 1 and %d, got %d", maxDedupEntries, d.MaxEntries))
	}
	return errors.Join(errs...)
}

// validate checks the Roboflow keys that are accepted, by Roboflow's own rules.
func (r RoboflowConfig) validate() error {
	var errs []error
	if r.MaxImageSize != nil && (len(r.MaxImageSize) != 2 || r.MaxImageSize[0] < 1 || r.MaxImageSize[1] < 1) {
		errs = append(errs, config.Errorf("max_image_size", "must be [height, width] with two positive integers, got %v", r.MaxImageSize))
	}
	if l := r.JPEGCompressionLevel; l != 0 && (l < 1 || l > 100) {
		errs = append(errs, config.Errorf("jpeg_compression_level", "must be between 1 and 100, got %d", l))
	}
	if b := r.BatchingStrategy; b != nil {
		switch b.RecreationInterval {
		case intervalNever, intervalDaily, intervalWeekly, intervalMonthly:
		default:
			errs = append(errs, config.Errorf("batching_strategy.recreation_interval", "must be one of never, daily, weekly, monthly, got %q", b.RecreationInterval))
		}
		switch {
		case b.MaxBatchImages < 0 || b.MaxBatchImages > maxLimitValue:
			errs = append(errs, config.Errorf("batching_strategy.max_batch_images", "must be between 0 and %d, got %d", maxLimitValue, b.MaxBatchImages))
		case b.MaxBatchImages > 0 && b.RecreationInterval == intervalNever:
			// Roboflow counts a never-recreated batch forever; the sampler keeps no counts
			// across restarts, so it could not honour the cap.
			errs = append(errs, config.Errorf("batching_strategy.max_batch_images", "with recreation_interval never it is a lifetime cap, which the sampler cannot keep across restarts: use limits (daily) instead"))
		}
	}
	return errors.Join(errs...)
}

// period returns the refill period of a limit type.
func period(typ string) time.Duration {
	switch typ {
	case Minutely:
		return time.Minute
	case Hourly:
		return time.Hour
	}
	return 24 * time.Hour
}

// batchPeriod returns the period max_batch_images applies to, or 0 for none.
func (b *BatchingConfig) batchPeriod() time.Duration {
	if b == nil || b.MaxBatchImages == 0 {
		return 0
	}
	switch b.RecreationInterval {
	case intervalDaily:
		return 24 * time.Hour
	case intervalWeekly:
		return 7 * 24 * time.Hour
	case intervalMonthly:
		return 30 * 24 * time.Hour
	}
	return 0
}
