import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.management.ManagementFactory;
import java.lang.management.MemoryMXBean;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.UUID;

/**
 * Fills its heap with the kind of objects a Java service holds — a session cache (HashMap of records with string
 * fields), order lists (ArrayLists of records), log-line strings, request/response byte buffers (some
 * pre-allocated and mostly empty, some holding compressed or encrypted payloads, some holding text), and
 * primitive arrays of metrics — until the live heap reaches the target, then prints "READY <used bytes>" and
 * waits for a line on stdin before it exits, so that the caller can take the dump with {@code jcmd <pid>
 * GC.heap_dump} while everything is still reachable.
 *
 * <p>Usage: {@code java -XX:+UseSerialGC -Xmx<n> HeapFill <target bytes> <seed>}. The same seed gives the same
 * object graph (not the same dump bytes: addresses differ between runs), which is why the caller caches dumps.
 */
public final class HeapFill {
    record Address(String street, String city, String zip, String country) {}

    record Customer(long id, String name, String email, Address address, Instant since) {}

    record OrderLine(String sku, int quantity, long priceCents) {}

    record Order(long id, Customer customer, List<OrderLine> lines, String status, Instant created) {}

    record Session(String id, Customer customer, Map<String, String> attributes, byte[] token, long lastSeen) {}

    private static final String[] FIRST = {"Anna", "Ben", "Chloé", "David", "Elif", "Farid", "Greta", "Hiro",
        "Ines", "Jonas", "Kasia", "Liam", "Mira", "Noah", "Olga", "Pavel", "Quinn", "Rosa", "Sven", "Tariq"};
    private static final String[] LAST = {"Müller", "Schmidt", "Nguyen", "García", "Rossi", "Kowalski", "Dubois",
        "Jensen", "Silva", "Yilmaz", "Novak", "Smith", "Tanaka", "Ivanova", "O'Brien", "Haddad"};
    private static final String[] CITIES = {"Berlin", "Lisbon", "Kraków", "Lyon", "Turin", "Aarhus", "Izmir",
        "Porto", "Leeds", "Brno", "Osaka", "Austin"};
    private static final String[] STATUS = {"NEW", "PAID", "PACKED", "SHIPPED", "DELIVERED", "RETURNED"};
    private static final String[] LEVELS = {"INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"};
    private static final String[] LOGGERS = {"c.e.shop.OrderService", "c.e.shop.PaymentClient",
        "o.a.k.clients.consumer.KafkaConsumer", "o.h.engine.jdbc.spi.SqlExceptionHelper",
        "c.e.shop.web.CheckoutController", "i.n.channel.DefaultChannelPipeline"};

    private final Random rnd;
    private final List<Customer> customers = new ArrayList<>();
    private final Map<String, Session> sessions = new HashMap<>();
    private final List<List<Order>> orderPages = new ArrayList<>();
    private final List<String> logRing = new ArrayList<>();
    private final List<byte[]> buffers = new ArrayList<>();
    private final List<long[]> metrics = new ArrayList<>();
    private long nextId = 1_000_000;

    private HeapFill(long seed) {
        rnd = new Random(seed);
    }

    public static void main(String[] args) throws Exception {
        long target = Long.parseLong(args[0]);
        HeapFill h = new HeapFill(Long.parseLong(args[1]));
        long used = h.fill(target);
        System.out.println("READY " + used + " pid " + ProcessHandle.current().pid());
        System.out.flush();
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8)).readLine();
        System.out.println("kept " + h.count()); // keeps every structure reachable until the dump is taken
    }

    /** Adds batches of objects until the heap in use after a full GC reaches target; returns that figure. */
    private long fill(long target) {
        MemoryMXBean mem = ManagementFactory.getMemoryMXBean();
        long used = 0;
        while (true) {
            for (int i = 0; i < 64; i++) {
                batch();
            }
            used = mem.getHeapMemoryUsage().getUsed();
            if (used < target) {
                continue; // garbage counts too, so only a GC below tells the live size
            }
            System.gc();
            used = mem.getHeapMemoryUsage().getUsed();
            if (used >= target) {
                return used;
            }
        }
    }

    /** One batch, about 256 KiB of live objects in the mix's proportions. */
    private void batch() {
        for (int i = 0; i < 40; i++) {
            customers.add(customer());
        }
        for (int i = 0; i < 30; i++) {
            Session s = session();
            sessions.put(s.id(), s);
        }
        List<Order> page = new ArrayList<>();
        for (int i = 0; i < 60; i++) {
            page.add(order());
        }
        orderPages.add(page);
        for (int i = 0; i < 300; i++) {
            logRing.add(logLine());
        }
        buffers.add(buffer());
        if (rnd.nextInt(4) == 0) {
            metrics.add(histogram());
        }
    }

    private Customer customer() {
        String first = pick(FIRST), last = pick(LAST);
        Address a = new Address((rnd.nextInt(200) + 1) + " " + pick(LAST) + "straße", pick(CITIES),
            String.format("%05d", rnd.nextInt(100000)), rnd.nextBoolean() ? "DE" : "PT");
        return new Customer(nextId++, first + " " + last,
            (first + "." + last + rnd.nextInt(1000) + "@example.com").toLowerCase(), a,
            Instant.ofEpochSecond(1_500_000_000L + rnd.nextInt(200_000_000)));
    }

    private Session session() {
        Map<String, String> attrs = new HashMap<>();
        attrs.put("locale", rnd.nextBoolean() ? "de_DE" : "pt_PT");
        attrs.put("cart", Long.toString(nextId + rnd.nextInt(5000)));
        attrs.put("ua", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/1" + (10 + rnd.nextInt(30)));
        byte[] token = new byte[32];
        rnd.nextBytes(token);
        return new Session(new UUID(rnd.nextLong(), rnd.nextLong()).toString(), randomCustomer(), attrs, token,
            1_790_000_000_000L - rnd.nextInt(3_600_000));
    }

    private Order order() {
        List<OrderLine> lines = new ArrayList<>();
        for (int i = rnd.nextInt(5) + 1; i > 0; i--) {
            lines.add(new OrderLine("SKU-" + (10000 + rnd.nextInt(90000)), rnd.nextInt(9) + 1,
                99L + rnd.nextInt(50000)));
        }
        return new Order(nextId++, randomCustomer(), lines, pick(STATUS),
            Instant.ofEpochMilli(1_700_000_000_000L + rnd.nextInt(1_000_000_000)));
    }

    private String logLine() {
        return String.format("2026-12-%02dT%02d:%02d:%02d.%03dZ %-5s [http-nio-8080-exec-%d] %s - order %d for %s"
                + " took %d ms (trace %s)", rnd.nextInt(28) + 1, rnd.nextInt(24), rnd.nextInt(60), rnd.nextInt(60),
            rnd.nextInt(1000), pick(LEVELS), rnd.nextInt(200), pick(LOGGERS), nextId - rnd.nextInt(100000),
            pick(CITIES), rnd.nextInt(2000), Long.toHexString(rnd.nextLong()));
    }

    /**
     * A network or I/O buffer: a pooled buffer used only at its start (the rest zero), a compressed or encrypted
     * payload (random bytes), or a serialised JSON response.
     */
    private byte[] buffer() {
        int kind = rnd.nextInt(10);
        if (kind < 5) {
            byte[] b = new byte[16 << 10];
            int used = rnd.nextInt(4 << 10);
            for (int i = 0; i < used; i++) {
                b[i] = (byte) ('a' + rnd.nextInt(26));
            }
            return b;
        }
        if (kind < 7) {
            byte[] b = new byte[4096 + rnd.nextInt(12 << 10)];
            rnd.nextBytes(b);
            return b;
        }
        StringBuilder sb = new StringBuilder("{\"orders\":[");
        for (int i = rnd.nextInt(40) + 10; i > 0; i--) {
            sb.append("{\"id\":").append(nextId - rnd.nextInt(100000)).append(",\"status\":\"").append(pick(STATUS))
                .append("\",\"city\":\"").append(pick(CITIES)).append("\",\"total\":").append(rnd.nextInt(99999))
                .append("},");
        }
        return sb.append("{}]}").toString().getBytes(StandardCharsets.UTF_8);
    }

    /** A latency histogram: counts that are mostly small, a few large. */
    private long[] histogram() {
        long[] h = new long[512];
        for (int i = 0; i < h.length; i++) {
            h[i] = rnd.nextInt(8) == 0 ? rnd.nextInt(1_000_000) : rnd.nextInt(16);
        }
        return h;
    }

    private Customer randomCustomer() {
        return customers.isEmpty() ? customer() : customers.get(rnd.nextInt(customers.size()));
    }

    private String pick(String[] a) {
        return a[rnd.nextInt(a.length)];
    }

    private long count() {
        return customers.size() + sessions.size() + orderPages.size() + logRing.size() + buffers.size()
            + metrics.size();
    }
}
