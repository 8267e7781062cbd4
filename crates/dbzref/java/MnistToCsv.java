// The blog's MnistToCsv transformation, written by us after its description: it follows
// ExtractNewRecordState, takes the row's Struct and returns a record whose key is the
// label column's int16 as a decimal string and whose value is the pixels column's bytes as
// unsigned numbers joined by commas, both Schema.STRING_SCHEMA (for the String converter).
// A tombstone (a deleted row) passes unchanged.
import java.util.Map;
import org.apache.kafka.common.config.ConfigDef;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.Schema;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.transforms.Transformation;

public class MnistToCsv<R extends ConnectRecord<R>> implements Transformation<R> {
    @Override
    public R apply(R record) {
        if (record.value() == null) {
            return record;
        }
        Struct row = (Struct) record.value();
        Short label = row.getInt16("label");
        byte[] pixels = row.getBytes("pixels");
        StringBuilder csv = new StringBuilder(pixels.length * 4);
        for (int i = 0; i < pixels.length; i++) {
            if (i > 0) csv.append(',');
            csv.append(pixels[i] & 0xff);
        }
        return record.newRecord(record.topic(), record.kafkaPartition(),
            Schema.STRING_SCHEMA, label == null ? null : label.toString(),
            Schema.STRING_SCHEMA, csv.toString(), record.timestamp());
    }

    @Override
    public ConfigDef config() {
        return new ConfigDef();
    }

    @Override
    public void close() {
    }

    @Override
    public void configure(Map<String, ?> configs) {
    }
}
